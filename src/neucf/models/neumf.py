"""The seed's three networks over rating vectors, NeuMF, GMF and MLP, as siblings sharing parts.

A user is their row of the training rating matrix and an item its column (missing = 0), as
in the notebook. :class:`RatingVectorNet` holds the parts (sparse projections, the GMF
product, the MLP tower, the scaled output); the three estimators differ only in which
branches they switch on and in their config dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from ..training import help_metadata
from .attribute_towers import TowerScoring
from .base import BiasFit
from .layers import BiasTerms, DenseBlock, ScaledSigmoid, SparseRowProjection, _index_types, _take
from .registry import register
from .torch_estimator import TorchRecommender


@dataclass
class NetworkConfig:
    """Settings every rating-vector network shares: its projections of the input vectors.

    Attributes:
        factors: units ``k`` of each projection and of each MLP layer (seed: 30).
        alpha: negative slope of the LeakyReLU after the first layer's projections (the
            seed's 0.4 everywhere; 0.8 here: nearly linear projections fit better, ml-100k
            and ML-1M alike; an MLP tower keeps the seed's slope, ``tower_alpha``).
        input_dropout: share of a rating vector's entries dropped at random while training.
        mask_target: remove r_ui from u's row and i's column when predicting r_ui, so a
            model never reads the answer from its input (the notebook did while training,
            and the answer is absent at test time).
        input_norm: each rating vector is divided by (its number of ratings) ** input_norm
            before the first layer: 0 feeds raw ratings as the seed does; 0.5 (default)
            keeps heavy and light raters' projections on one scale.
        projection: how the first layer's sparse product is computed: ``auto``, ``full``
            or ``bag`` (see :class:`~neucf.models.layers.SparseRowProjection`); all exact.
        input_sample: while training, estimate each row's projection from at most this
            many of its entries (see :class:`~neucf.models.layers.SparseRowProjection`),
            so a step's cost no longer grows with the data; 0 (default) uses whole rows.
            Off by default because it costs accuracy.
        inputs: what a user's row (an item's column) holds. ``residuals`` (default): two
            channels side by side, the rating less the data's bias fit
            (``r - mean - b_u - b_i``, what the interaction has to explain) and a 1 for
            "rated" (which items a user chose to rate, as SVD++'s implicit term); missing
            entries are 0 in both. ``ratings``: the seed's raw rating vectors.
        baseline: predict ``mean + b_u + b_i + f(u, i)``, the biases learnt jointly from
            the data's own bias fit (:class:`~neucf.models.layers.BiasTerms`) and the
            interaction ``f`` starting at zero, so the network starts as the bias baseline
            and can only move away from it where validation improves. False: the seed's
            ``low + (high - low) * sigmoid(f(u, i))``.
        ids: the first layer also reads each user's and item's one-hot id (as the original
            NeuMF does, beside the seed's rating vectors): a learnt vector per user and per
            item, added to the projection of its rating vector, starting at 0. A rating
            vector is a fixed linear function of whichever ratings a user happens to have;
            the id's vector lets training correct it per user, as ``mf`` fits each user's
            factors (which matters on dense data with a strong interaction). A user folded in after
            training has no id vector: their rating vector alone represents them.
        id_reg: the id vectors' penalty, per rating: the mean over a batch of
            ``id_reg * (|e_u|^2 + |e_i|^2)``, so a user's vector is held as ``mf``'s factors
            are, by ``id_reg`` times their number of ratings (3: the best of 1, 3 and 10).
        item_attribute_input: when the training data has item attributes, the first layer
            also reads each item's attribute features (:class:`~neucf.attributes.FeatureMap`'s
            encoding) times this scale, through weights of their own that start at 0 and
            share the network's L2: genres and years then shape the representation of every
            item the network was trained on, not only of items nobody rated (those the
            attribute towers score). The scale sets how fast those weights move against the
            rating vectors' (Adam's steps are the same size whatever a gradient's scale).
            0: the network reads none.
        user_attribute_input: the same for users' attributes (smaller: demographics say less
            of a user with ratings than genres say of an item).

    Examples:
        >>> NetworkConfig(factors=8).alpha
        0.8
    """

    factors: int = field(default=30, metadata=help_metadata("Units per projection / MLP layer (seed 30)."))
    alpha: float = field(default=0.8, metadata=help_metadata("LeakyReLU slope after the input projections (seed 0.4)."))
    input_dropout: float = field(
        default=0.3, metadata=help_metadata("Share of input rating-vector entries dropped while training.")
    )
    mask_target: bool = field(default=True, metadata=help_metadata("Hide r_ui from its own input while training."))
    input_norm: float = field(
        default=0.5, metadata=help_metadata("Divide each rating vector by its count ** this (0: raw).")
    )
    projection: str = field(
        default="auto", metadata=help_metadata("First-layer product: auto, full or bag (all exact).")
    )
    inputs: str = field(
        default="residuals",
        metadata=help_metadata("Input vectors: residuals (rating - biases, plus rated/not) or ratings."),
    )
    input_sample: int = field(
        default=0,
        metadata=help_metadata("While training, project each row from at most this many sampled entries (0: all)."),
    )
    baseline: bool = field(
        default=True,
        metadata=help_metadata("Predict mean + b_u + b_i + f(u, i) (false: the seed's scaled sigmoid of f)."),
    )
    ids: bool = field(
        default=True,
        metadata=help_metadata("Add a learnt vector per user and item id to the first layer (original NeuMF)."),
    )
    id_reg: float = field(default=3.0, metadata=help_metadata("Penalty on the id vectors, per rating."))
    item_attribute_input: float = field(
        default=0.5,
        metadata=help_metadata("Scale of each item's attribute features beside its rating vector (0: not read)."),
    )
    user_attribute_input: float = field(
        default=0.1,
        metadata=help_metadata("Scale of each user's attribute features beside their rating vector (0: not read)."),
    )

    def __post_init__(self):
        if self.inputs not in ("residuals", "ratings"):
            raise UsageError(f"inputs must be residuals or ratings, not {self.inputs!r}")
        if self.input_sample < 0:
            raise UsageError(f"input_sample must be >= 0, got {self.input_sample}")
        if self.projection not in ("auto", "full", "bag"):
            raise UsageError(f"projection must be auto, full or bag, not {self.projection!r}")
        if self.factors < 1:
            raise UsageError(f"factors must be >= 1, got {self.factors}")
        if not 0 <= self.input_dropout < 1:
            raise UsageError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.id_reg < 0:
            raise UsageError(f"id_reg must be >= 0, got {self.id_reg}")
        for name in ("item_attribute_input", "user_attribute_input"):
            if not (getattr(self, name) >= 0 and np.isfinite(getattr(self, name))):
                raise UsageError(f"{name} must be a number >= 0, got {getattr(self, name)}")


@dataclass
class MLPConfig(NetworkConfig):
    """A network with an MLP tower (MLP and NeuMF): the shared settings plus the tower's.

    Attributes:
        layers: dense layers in the MLP branch (the seed's 5; 3 here: as accurate, and a
            tenth faster).
        dropout: dropout after each MLP layer.
        tower_alpha: LeakyReLU slope of the MLP branch's dense layers (seed: 0.4).

    Examples:
        >>> MLPConfig(factors=8).layers
        3
    """

    layers: int = field(default=3, metadata=help_metadata("Dense layers in the MLP branch (seed 5)."))
    dropout: float = field(default=0.0, metadata=help_metadata("Dropout after each MLP layer."))
    tower_alpha: float = field(default=0.4, metadata=help_metadata("LeakyReLU slope in the MLP tower (seed 0.4)."))

    def __post_init__(self):
        super().__post_init__()
        if self.layers < 0:
            raise UsageError(f"layers must be >= 0, got {self.layers}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")


class RatingVectorNet(nn.Module):
    """GMF and/or MLP branches over sparse rating vectors, joined by one output unit.

    user row -> Dense(d) + LeakyReLU, item column -> Dense(d) + LeakyReLU (rows of
    ``user_rows`` and ``item_rows``, one or more channels of n_items (n_users) columns
    each, see :func:`input_matrices`), where ``d`` is the
    sum of the branch widths (one sparse product serves both branches); then
    GMF: element-wise product of the first ``gmf_factors`` units; MLP: concatenation of the
    rest -> ``layers`` x [Dense(k) + LeakyReLU]; the branch outputs are concatenated ->
    Dense(1) = ``f(u, i)``. With ``baseline`` (:class:`BiasTerms`) the prediction is
    ``mean + b_u + b_i + f(u, i)`` and the output unit starts at zero; without, the seed's
    ``low + (high - low) * sigmoid(f(u, i))``. ``features`` (``"user"``, ``"item"``: rows x f
    sparse matrices or None) are read beside the rating vectors by the first layer
    (:class:`~neucf.models.layers.SparseRowProjection`).

    Examples:
        >>> m = sp.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
        >>> net = RatingVectorNet(m, m.T.tocsr(), (1, 5), MLPConfig(factors=3, layers=2), gmf_factors=3, mlp_factors=3)
        >>> net(torch.tensor([0, 1]), torch.tensor([2, 3])).shape
        torch.Size([2])
    """

    shrunk_biases = True  # a baseline's terms keep the bias fit's shrinkage (see TorchRecommender)

    def __init__(
        self,
        user_rows: sp.csr_matrix,
        item_rows: sp.csr_matrix,
        scale: tuple[float, float],
        config: NetworkConfig,
        gmf_factors: int,
        mlp_factors: int,
        batch_size: int = 512,
        baseline: BiasTerms | None = None,
        features: dict[str, sp.csr_matrix | None] | None = None,
    ):
        super().__init__()
        if gmf_factors + mlp_factors == 0:
            raise UsageError("a network needs a GMF branch, an MLP branch or both")
        if mlp_factors and not isinstance(config, MLPConfig):
            raise UsageError("an MLP branch needs an MLPConfig (layers, dropout)")
        self.mask_target = config.mask_target
        self.gmf_factors, self.mlp_factors = gmf_factors, mlp_factors
        width = gmf_factors + mlp_factors
        n_users, n_items = user_rows.shape[0], item_rows.shape[0]
        self.channels = user_rows.shape[1] // n_items
        # masking hides the target's entry in every channel
        self.register_buffer("user_offsets", torch.arange(self.channels) * n_items, persistent=False)
        self.register_buffer("item_offsets", torch.arange(self.channels) * n_users, persistent=False)
        project = dict(
            dropout=config.input_dropout,
            mode=config.projection,
            batch_size=batch_size,
            norm=config.input_norm,
            sample=config.input_sample,
            channels=self.channels,
            ids=config.ids,
        )
        self.id_reg = config.id_reg
        features = features or {}
        self.user_projection = SparseRowProjection(user_rows, width, features=features.get("user"), **project)
        self.item_projection = SparseRowProjection(item_rows, width, features=features.get("item"), **project)
        self.activation = nn.LeakyReLU(config.alpha)
        joined = gmf_factors
        if mlp_factors:
            self.mlp = DenseBlock(2 * mlp_factors, config.factors, config.layers, config.tower_alpha, config.dropout)
            joined += config.factors if config.layers else 2 * mlp_factors
        self.output = nn.Linear(joined, 1)
        self.baseline = baseline
        if baseline is not None:
            # f starts at zero: the network starts as its bias baseline
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        self.scale = ScaledSigmoid(*scale)

    def step_state(
        self, users: torch.Tensor, items: torch.Tensor, located: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...] | None:
        """What a training step on the pairs ``users`` x ``items`` computes once before
        taking a large batch in chunks (see :class:`~neucf.training.Trainer`), or None where
        either projection has no :meth:`~neucf.models.layers.SparseRowProjection.step_state`:
        both projections' (values, every row's product; user side first; their targets
        taken out where the net masks them and the projections take a batch's out at once,
        and then the values None),
        or, where every user and item has one input for the step (:meth:`_by_row`), what
        :meth:`_rows` makes of them. ``located``: the pairs' rows of :meth:`locate`."""
        mask = self.mask_target
        by_row = self._by_row()
        at_user, at_item = (None, None) if located is None else located.unbind(1)
        sides = (
            (self.user_projection, users, items[:, None] + self.user_offsets if mask else None, at_user),
            (self.item_projection, items, users[:, None] + self.item_offsets if mask else None, at_item),
        )
        states = []
        for projection, rows, mask_cols, at in sides:
            state = projection.step_state(rows, mask_cols, at)
            if state is None:
                return None
            # by row, a side's step values go as soon as its product is made: two copies of
            # the input's entries fewer alive at once (320 MB at ML-25M's size)
            states.append(projection.every_row(state) if by_row else state)
        return self._rows(*states) if by_row else (*states[0], *states[1])

    def locate(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor | None:
        """Where each pair's rating sits in the user rows and in the item rows (n, 2; the
        first channel's position among the non-zeros, -1 where absent), for
        :meth:`step_state`'s ``located``; None where a training step has no use for them (it
        masks nothing, or not batch-wide). A trainer finds them once for all its ratings,
        instead of one search per masked pair in every step (a tenth of a step). Found in slices of a million pairs,
        so that the search's temporaries stay small beside the answer (int32 where the
        matrices allow: 160 MB at ML-25M's size)."""
        sides = (self.user_projection, self.item_projection)
        if not self.mask_target or not all(side.batch_masking for side in sides):
            return None
        dtype = _index_types(max(len(side.values) for side in sides))[1]
        found = torch.empty((len(users), 2), dtype=dtype, device=users.device)
        for start in range(0, len(users), 2**20):
            u, i = users[start : start + 2**20].long(), items[start : start + 2**20].long()
            found[start : start + len(u), 0] = self.user_projection.position(u, i)
            found[start : start + len(u), 1] = self.item_projection.position(i, u)
        return found

    def forward(self, users: torch.Tensor, items: torch.Tensor, state: tuple | None = None) -> torch.Tensor:
        if self._by_row():
            return self._forward_by_row(users, items, state)
        mask = self.mask_target
        user_state, item_state = (None, None) if state is None else (state[:2], state[2:])
        p = self.user_projection(users, items[:, None] + self.user_offsets if mask else None, user_state)
        q = self.item_projection(items, users[:, None] + self.item_offsets if mask else None, item_state)
        p, q = self.activation(p), self.activation(q)
        base = self.baseline(users, items) if self.baseline is not None else None
        return self.head(p, q, base)

    def _by_row(self) -> bool:
        """Whether a training step gives every user and item one input for all of its pairs
        (see :attr:`~neucf.models.layers.SparseRowProjection.shares_rows_in_step`): the
        activations and the MLP's first layer then run once per row, not once per pair."""
        sides = (self.user_projection, self.item_projection)
        return all(side.shares_rows_in_step for side in sides) and (
            not self.mask_target or all(side.batch_masking for side in sides)
        )

    def _rows(self, user: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every user's and every item's representation from the projections' every-row
        outputs (:meth:`~neucf.models.layers.SparseRowProjection.every_row`), where rows have
        one input (:meth:`_by_row`): with an MLP tower, their GMF units and their shares of
        its first dense layer (the layer is linear in [p | q]); else the whole
        representations. Users first."""
        p = self.activation(user)
        q = self.activation(item)
        if not self._has_first_layer():
            return p, q
        g, m = self.gmf_factors, self.mlp_factors
        on_p, on_q = self.mlp[0].weight.split([m, m], dim=1)
        return p[:, :g], q[:, :g], F.linear(p[:, g:], on_p), F.linear(q[:, g:], on_q, self.mlp[0].bias)

    def _has_first_layer(self) -> bool:
        """Whether the net has an MLP tower with dense layers (its first layer splits per side)."""
        return bool(self.mlp_factors) and len(self.mlp) > 0

    def _forward_by_row(self, users: torch.Tensor, items: torch.Tensor, state: tuple | None) -> torch.Tensor:
        """:meth:`forward` in a step where every row has one input (:meth:`_by_row`): the
        same function, with the activations and the first dense layer run for every user and
        item (:meth:`_rows`, once a step however many chunks take it), then taken per pair
        (ML-1M's batches: 35,635 pairs, 9,746 rows)."""
        rows = self.step_state(users, items) if state is None else state
        first = _take(rows[2], users) + _take(rows[3], items) if self._has_first_layer() else None
        base = self.baseline(users, items) if self.baseline is not None else None
        return self.head(_take(rows[0], users), _take(rows[1], items), base, first)

    def represent_items(self, items: torch.Tensor) -> torch.Tensor:
        """The items' first-layer representations (their full columns; eval mode: no dropout)."""
        return self.activation(self.item_projection(items))

    def head(
        self, p: torch.Tensor, q: torch.Tensor, base: torch.Tensor | None = None, first: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted ratings from user and item representations (GMF and/or MLP, then the
        output), added to ``base`` (the batch's ``mean + b_u + b_i``) when the net has a baseline.
        ``first``: the MLP's first dense layer before its activation, when already computed
        (then ``p`` may be one row for every ``q``, and both may hold the GMF units only)."""
        g, m = self.gmf_factors, self.mlp_factors
        # split, not sliced and concatenated: on ML-1M-sized batches each slice's backward
        # zero-fills a whole batch-sized gradient and each concatenation copies one (about a
        # sixth of a training step, measured with torch.profiler)
        p_gmf, p_mlp = p.split([g, p.shape[1] - g], dim=1)
        q_gmf, q_mlp = q.split([g, q.shape[1] - g], dim=1)
        parts = []
        if g:
            parts.append(p_gmf * q_gmf)
        if m and len(self.mlp):
            if first is None:  # the first dense layer on [p | q], as two products
                on_p, on_q = self.mlp[0].weight.split([m, m], dim=1)
                first = F.linear(p_mlp, on_p) + F.linear(q_mlp, on_q, self.mlp[0].bias)
            h = first
            for layer in list(self.mlp)[1:]:
                h = layer(h)
            parts.append(h)
        elif m:  # no dense layers: the concatenation itself
            parts.append(torch.cat([p_mlp.expand(len(q), -1), q_mlp], dim=1))
        # the output unit over [gmf | mlp], as one product per part
        widths = [part.shape[1] for part in parts]
        z = sum(F.linear(part, w) for part, w in zip(parts, self.output.weight.split(widths, dim=1)))
        z = (z + self.output.bias).squeeze(1)
        return self.scale(z) if base is None else base + z

    @torch.no_grad()
    def score_row(self, p: torch.Tensor, items: torch.Tensor, user_bias: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Predictions for one user, given by their representation ``p`` (1, d) and bias (used
        with a baseline), against ``items``, from the items' side computed once and kept until
        the weights change (eval mode): their representations and, with an MLP, their share of
        its first layer, as a server does (equal to :meth:`head` up to float rounding). Asked
        for most items, it scores them all and picks: cheaper than gathering their rows."""
        baseline = self.baseline
        if self.training:  # dropout would make a cache wrong
            base = None if baseline is None else baseline.mean + user_bias + baseline.item_bias[items]
            return self.head(p, self.represent_items(items), base)
        q, first = self._item_side()
        picked = 2 * len(items) < len(q)
        if picked:
            q, first = q[items], None if first is None else first[items]
        if first is not None:
            g, m = self.gmf_factors, self.mlp_factors
            first = first + p[:, g:] @ self.mlp[0].weight[:, :m].T
        item_bias = None if baseline is None else baseline.item_bias if not picked else baseline.item_bias[items]
        base = None if baseline is None else baseline.mean + user_bias + item_bias
        scores = self.head(p, q, base, first)
        return scores if picked else scores[items]

    def _item_side(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        params = [self.item_projection.weight, self.item_projection.bias]
        for extra in (self.item_projection.row_embedding, self.item_projection.feature_weight):
            if extra is not None:
                params.append(extra)
        has_first = self._has_first_layer()
        if has_first:
            params += [self.mlp[0].weight, self.mlp[0].bias]
        key = tuple((t._version, t.data_ptr()) for t in params)
        if getattr(self, "_item_side_key", None) != key:
            every = torch.arange(self.item_projection.shape[0], device=params[0].device)
            q = self.represent_items(every)
            first = None
            if has_first:
                g, m = self.gmf_factors, self.mlp_factors
                first = q[:, g:] @ self.mlp[0].weight[:, m:].T + self.mlp[0].bias
            self._item_side_cache, self._item_side_key = (q, first), key
        return self._item_side_cache

    def predict_and_penalty(
        self, users: torch.Tensor, items: torch.Tensor, l2: float, state: tuple | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and the regulariser: ``l2`` x the sum of squared weights (biases
        excluded), plus the bias terms' and the id vectors' own penalties (means over the
        batch). ``state``: see
        :meth:`step_state`."""
        pred = self(users, items, state)
        penalty = torch.zeros((), dtype=pred.dtype, device=pred.device)
        if l2:  # summing every weight's square each step is not free: skip it when unweighted
            penalty = l2 * sum((p**2).sum() for name, p in self.named_parameters() if name.endswith("weight"))
        if self.baseline is not None:
            penalty = penalty + self.baseline.penalty(users, items)
        if self.id_reg:
            ids = self.user_projection.id_penalty(users) + self.item_projection.id_penalty(items)
            penalty = penalty + self.id_reg * ids
        return pred, penalty


def input_matrices(train, inputs: str, fit: BiasFit) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The networks' input rows: users x items and items x users, one block per channel.

    ``ratings``: the rating matrix and its transpose. ``residuals``: [residual | rated],
    where residual is ``r - mean - b_u - b_i`` and rated is 1 where a rating exists, so that
    user rows are n_users x 2 n_items and item rows n_items x 2 n_users.

    Examples:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
        >>> users, items = input_matrices(r, "residuals", BiasFit.of(r))
        >>> users.shape, items.shape
        ((2, 4), (2, 4))
    """
    shape = (train.n_users, train.n_items)
    coords = (train.users, train.items)
    if inputs == "ratings":
        matrix = sp.csr_matrix((train.ratings.astype(np.float32), coords), shape=shape)
        return matrix, matrix.T.tocsr()
    residual = sp.csr_matrix((fit.residuals(train).astype(np.float32), coords), shape=shape)
    rated = sp.csr_matrix((np.ones(len(train), np.float32), coords), shape=shape)
    return sp.hstack([residual, rated], format="csr"), sp.hstack([residual.T, rated.T], format="csr")


class RatingVectorModel(TowerScoring, TorchRecommender):
    """What NeuMF, GMF and MLP share: the network, its search space and its regularisers.

    Subclasses say which branches they have (``gmf``, ``mlp``) and their config class.
    A user unseen in training is folded in by passing their rating row through the trained
    user projection, normalised as in training; an item unseen in training, by passing its
    column (ratings of trained users) through the item projection (:meth:`add_items`). Users
    and items known only by attributes are scored by attribute towers through the network's
    head (:class:`TowerScoring`).
    """

    gmf: ClassVar[bool] = True
    mlp: ClassVar[bool] = True
    can_fold_in: ClassVar[bool] = True
    can_fold_in_items: ClassVar[bool] = True
    uses_attributes: ClassVar[bool] = True
    # large batches (a step's first layer costs the whole matrix's non-zeros, so fewer steps
    # make an epoch cheaper), a fixed number of steps per epoch on larger data (an epoch's cost
    # linear in the data), a moving average of the weights over about 30 steps (validated and
    # kept: the iterates of so large a rate scatter around the optimum), whose smooth
    # validation curve lets patience be 1, a stronger L2 prior than the default for the
    # nearly linear projections, and a 150-step wait (small data's epochs are a few steps, and
    # the start's plateau, longer under that prior, outlasts them): each measured in "Why the
    # defaults" (the documentation)
    train_defaults: ClassVar[dict] = {
        "batch_size": 8192, "lr": 0.01, "steps_per_epoch": 24, "patience": 1, "min_steps": 150, "average": 0.97,
        "l2_scale": 3.0,
    }  # fmt: skip

    @property
    def reads_held_out(self) -> bool:
        """A network that masks each target (``mask_target``) reads every training rating,
        the held-out share's too, as input."""
        return self.config.mask_target

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray):
        """The user's first-layer representation and their bias (one least-squares half-step
        against the item biases, with the fit's shrinkage), both as training rows had them."""
        return self._fold_vector("user", items, ratings)

    #: an item folded in from n interactions adds n / (n + FOLD_SHRINK) of what the network
    #: adds to its baseline (``mean + b_u + b_i``): a column of a few ratings says little, and
    #: unshrunk it scored worse than the baseline alone up to ~10 ratings (the guide's "New
    #: items from their first interactions"; ``benchmarks/foldin.py --parts items``)
    FOLD_SHRINK: ClassVar[float] = 20.0

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray):
        """The item's first-layer representation (d,), bias and weight (see
        :attr:`FOLD_SHRINK`; 1 without a baseline to shrink to) from its column, as a new
        user's are from their row (:meth:`_fold_in`): what :meth:`add_items` keeps."""
        rep, bias = self._fold_vector("item", users, ratings)
        if bias is None:
            return rep[0], torch.zeros(()), torch.ones(())
        return rep[0], bias.float(), torch.tensor(len(users) / (len(users) + self.FOLD_SHRINK))

    @torch.no_grad()
    def _fold_vector(self, side: str, index: np.ndarray, ratings: np.ndarray):
        """A new user's row (``side`` "user": item indices and ratings) or item's column
        ("item": user indices) through the first layer, and its bias (None without a
        baseline), as training rows had them."""
        if self.net.training:  # switching every module costs more than a small prediction
            self.net.eval()
        dtype = next(self.net.parameters()).dtype
        cols = torch.from_numpy(np.asarray(index, dtype=np.int64))
        values = torch.as_tensor(ratings, dtype=dtype)
        user = side == "user"

        def shrunk_mean(residual, reg_user, reg_item):
            return residual.sum() / (len(residual) + (reg_user if user else reg_item))

        inputs = (cols, values)
        if self.config.inputs == "residuals":
            # the input residuals use the bias fit the training rows were made with
            fit = self.input_biases_
            other = fit.item_bias if user else fit.user_bias
            residual = values - fit.mean - torch.as_tensor(other, dtype=dtype)[cols]
            residual = residual - shrunk_mean(residual, fit.reg_user, fit.reg_item)
            inputs = (torch.cat([cols, cols + len(other)]), torch.cat([residual, torch.ones_like(values)]))
        baseline = self.net.baseline
        bias = None
        if baseline is not None:
            other = baseline.item_bias if user else baseline.user_bias
            bias = shrunk_mean(values - baseline.mean - other[cols], baseline.reg_user, baseline.reg_item)
        projection = self.net.user_projection if user else self.net.item_projection
        return self.net.activation(projection.project_row(*inputs)), bias

    @torch.no_grad()
    def _predict_folded(self, state, items: np.ndarray) -> np.ndarray:
        if self.net.training:  # switching every module costs more than a small prediction
            self.net.eval()
        p, bias = state
        index = torch.from_numpy(np.asarray(items, dtype=np.int64))
        return self.net.score_row(p, index, 0.0 if bias is None else bias).float().numpy()

    @torch.no_grad()
    def _score_user(self, u: int, items: np.ndarray, unseen: bool = False) -> np.ndarray:
        if not unseen:
            return super()._score_user(u, items)
        # no item is in the user's row, so no target to mask: one user row against the items'
        # cached side gives the pairwise forward's numbers (up to float rounding), without its
        # lookups
        if self.net.training:  # switching every module costs more than a small prediction
            self.net.eval()
        index = torch.from_numpy(np.asarray(items, dtype=np.int64))
        p = self.net.activation(self.net.user_projection(torch.tensor([u])))
        bias = 0.0 if self.net.baseline is None else self.net.baseline.user_bias[u]
        return np.clip(self.net.score_row(p, index, bias).float().numpy(), *self.scale)

    @torch.no_grad()
    def _warm_sides(self):
        """Every user's row and item's column through the first layer (eval mode), the bias
        terms and the mean (0s without a baseline)."""
        self.net.eval()
        users = torch.arange(self.net.user_projection.shape[0])
        p = torch.cat([self.net.activation(self.net.user_projection(users[s : s + 4096]))
                       for s in range(0, len(users), 4096)])  # fmt: skip
        q = self.net.represent_items(torch.arange(self.net.item_projection.shape[0]))
        baseline = self.net.baseline
        if baseline is None:
            return p, torch.zeros(len(p)), q, torch.zeros(len(q)), 0.0
        return p, baseline.user_bias.detach(), q, baseline.item_bias.detach(), float(baseline.mean)

    def _folded_cold(self, state, items, row):
        p, bias = state
        return self._rep_scores(p, 0.0 if bias is None else bias, items)

    def _score_sides(self, p, q, base):
        return self.net.head(p, q, base if self.net.baseline is not None else None)

    def _attribute_inputs(self) -> dict[str, float]:
        return {"user": self.config.user_attribute_input, "item": self.config.item_attribute_input}

    def _build(self, train):
        k = self.config.factors
        self.input_biases_ = self._input_bias_fit(train)
        fit = self.input_biases_
        baseline = BiasTerms.from_fit(fit, train) if self.config.baseline else None
        return RatingVectorNet(
            *input_matrices(train, self.config.inputs, fit),
            train.scale,
            self.config,
            gmf_factors=k if self.gmf else 0,
            mlp_factors=k if self.mlp else 0,
            batch_size=self.training.batch_for(len(train)),
            baseline=baseline,
            features=self._network_features(),
        )

    @classmethod
    def search_space(cls, trial) -> dict:
        """Units, L2, input dropout and normalisation, masking (and the MLP tower's layers and dropout)."""
        params = super().search_space(trial)
        params.update(
            factors=trial.suggest_int("factors", 8, 128, log=True),
            l2=trial.suggest_float("l2", 1e-8, 1e-3, log=True),
            input_dropout=trial.suggest_float("input_dropout", 0.0, 0.7),
            input_norm=trial.suggest_categorical("input_norm", [0.0, 0.5, 1.0]),
            mask_target=trial.suggest_categorical("mask_target", [True, False]),
            id_reg=trial.suggest_float("id_reg", 0.3, 30.0, log=True),
        )
        if cls.mlp:
            params.update(layers=trial.suggest_int("layers", 1, 5), dropout=trial.suggest_float("dropout", 0.0, 0.5))
        return params

    @classmethod
    def unregularised(cls) -> dict:
        """No L2, id penalty, input dropout, layer dropout, masking or early stopping."""
        extra = {"dropout": 0.0} if cls.mlp else {}
        return {**super().unregularised(), "input_dropout": 0.0, "mask_target": False, "id_reg": 0.0, **extra}


@register("neumf")
class NeuMF(RatingVectorModel):
    """The seed's NeuMF: GMF and MLP branches over rating vectors, joined in one output.

    Examples:
        >>> model = NeuMF(factors=30, layers=5, epochs=40)
        >>> (model.config.factors, model.training.epochs)
        (30, 40)
    """

    config_class = MLPConfig


@register("gmf")
class GMF(RatingVectorModel):
    """The seed's ``NeuCFModel``: element-wise product of user and item projections.

    Examples:
        >>> GMF(factors=8).config.factors
        8
    """

    config_class = NetworkConfig
    mlp = False


@register("mlp")
class MLP(RatingVectorModel):
    """The seed's ``EncoderMLP``: concatenated projections through dense layers.

    Examples:
        >>> MLP(layers=3).config.layers
        3
    """

    config_class = MLPConfig
    gmf = False
    # the deep tower alone starts learning slowly: at NeuMF's 8192 / 0.01 it stops at its bias
    # baseline, and on small data its plateau outlasts a patience of 3 epochs; under NeuMF's
    # stronger L2 prior it stays at its baseline ("Why the defaults" in the documentation)
    train_defaults: ClassVar[dict] = {"batch_size": 4096, "lr": 0.003, "min_steps": 100}
