"""Item-based AutoRec (I-AutoRec, Sedhain et al. 2015): each item's column of ratings is
encoded and reconstructed, and a prediction is the reconstruction's entry at the user.

A family apart from the rating-vector networks: the user is not encoded at all but is one
output unit of the decoder (a free vector per user, as in matrix factorisation), and the item
is a nonlinear function of its whole column. Its errors differ from NeuMF's and GMF's, which is
what an ensemble needs: alone it is weaker than they are, and in the default ``ensemble`` it
carries weight (the figures: "Why the defaults" in the documentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import UsageError
from ..training import StepTrainer, help_metadata
from .registry import register
from .torch_estimator import TorchRecommender, ridge_with_bias


@dataclass
class AutoRecConfig:
    """I-AutoRec's settings.

    Attributes:
        hidden: units of the encoding (the paper's 500).
        reg: the paper's lambda: ``reg / 2`` times the squared weights is added to the sum of
            squared errors; neucf's loss is a mean over ratings, so the L2 weight is
            ``reg / (2 n)`` for ``n`` training ratings (``l2``, when given, replaces it).
            100: the best of 30, 100 and 300 on ml-100k u1 and u2 and of 30 and 100 on ML-1M.
        item_attribute_input: when the training data has item attributes, the encoder also
            reads each item's attribute features (:class:`~neucf.attributes.FeatureMap`'s
            encoding) times this scale, through weights of their own that start at 0 and are
            penalised as the others: an item's genres and year then shape its encoding beside
            its ratings, most for items with few. Larger than the rating networks' scale:
            this encoder's other inputs are whole columns of ratings (10: the best of 0.5, 2,
            5, 10, 20 and 40 on ml-100k u1..u5). 0: the encoder reads none.

    Examples:
        >>> AutoRecConfig().hidden
        500
    """

    hidden: int = field(default=500, metadata=help_metadata("AutoRec: units of the item encoding."))
    reg: float = field(
        default=100.0, metadata=help_metadata("AutoRec: lambda on the summed squared error (l2 unset: reg / 2n).")
    )
    item_attribute_input: float = field(
        default=10.0,
        metadata=help_metadata("Scale of each item's attribute features beside its rating vector (0: not read)."),
    )

    def __post_init__(self):
        if self.hidden < 1:
            raise UsageError(f"hidden must be >= 1, got {self.hidden}")
        if not (self.reg >= 0 and math.isfinite(self.reg)):
            raise UsageError(f"reg must be >= 0, got {self.reg}")
        if not (self.item_attribute_input >= 0 and math.isfinite(self.item_attribute_input)):
            raise UsageError(f"item_attribute_input must be >= 0, got {self.item_attribute_input}")


def item_columns(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, shape, low: float) -> sp.csr_matrix:
    """Items x users, each rating as ``r - low + 1`` (missing entries are 0, every rating
    at least 1 whatever the scale: a 1..5 rating is its own value).

    Examples:
        >>> item_columns(np.array([0, 1]), np.array([1, 0]), np.array([5.0, 0.5]), (2, 2), 0.5).toarray()
        array([[0. , 1. ],
               [5.5, 0. ]], dtype=float32)
    """
    values = (np.asarray(ratings, np.float64) - low + 1.0).astype(np.float32)
    return sp.csr_matrix((values, (items, users)), shape=(shape[1], shape[0]))


class AutoRecNet(nn.Module):
    """``r_ui = decoder(sigmoid(encoder(column_i)))_u``: dense layers over the items' columns.

    ``columns``: the items' input columns (:func:`item_columns`), kept as a sparse buffer;
    a batch of items is made dense for its two products. ``features`` (items x f, sparse):
    each item's attribute features, whose product with :attr:`feature_encoder`'s weights
    (starting at 0) is added to the encoder's (the input is then ``[column_i | a_i]``).

    Examples:
        >>> columns = item_columns(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([4.0, 3, 5]), (2, 2), 1.0)
        >>> net = AutoRecNet(columns, hidden=3)
        >>> net(torch.tensor([0, 1]), torch.tensor([1, 0])).shape
        torch.Size([2])
    """

    def __init__(self, columns: sp.csr_matrix, hidden: int, features: sp.csr_matrix | None = None):
        super().__init__()
        n_users = columns.shape[1]
        self.columns = columns
        self.encoder = nn.Linear(n_users, hidden)
        self.features = None if features is None or not features.shape[1] else sp.csr_matrix(features)
        self.feature_encoder = None
        if self.features is not None:
            self.feature_encoder = nn.Linear(self.features.shape[1], hidden, bias=False)
            nn.init.zeros_(self.feature_encoder.weight)
        # torch's default initialisation, the output's bias included: started at the mean
        # rating, it fits sooner and over-fits sooner (ml-100k u1 0.9120 against 0.9105)
        self.decoder = nn.Linear(hidden, n_users)

    def dense(self, items: np.ndarray) -> torch.Tensor:
        """The items' columns as a dense (len(items), n_users) tensor."""
        weight = self.encoder.weight
        return torch.from_numpy(self.columns[items].toarray()).to(device=weight.device, dtype=weight.dtype)

    def encode(self, items: np.ndarray, columns: torch.Tensor | None = None) -> torch.Tensor:
        """The items' encodings (len(items), hidden), from their columns (``columns``: as
        :meth:`dense` gives them, when the caller has them already)."""
        out = self.encoder(self.dense(items) if columns is None else columns)
        if self.feature_encoder is not None:
            weight = self.feature_encoder.weight
            out = out + self.feature_encoder(torch.from_numpy(self.features[items].toarray()).to(weight))
        return torch.sigmoid(out)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predictions for (user, item) pairs, each item encoded once, 1,024 items at a time
        (so that every pair of a test set can be asked at once)."""
        unique, where = np.unique(items.cpu().numpy(), return_inverse=True)
        where = torch.from_numpy(where.reshape(-1)).to(users.device)
        out = torch.empty(len(users), dtype=self.decoder.weight.dtype, device=users.device)
        for start in range(0, len(unique), 1024):
            pairs = torch.nonzero((where >= start) & (where < start + 1024)).squeeze(1)
            h = self.encode(unique[start : start + 1024])[where[pairs] - start]
            u = users[pairs]
            out[pairs] = (h * self.decoder.weight[u]).sum(1) + self.decoder.bias[u]
        return out

    def penalty(self) -> torch.Tensor:
        """The squared weights (biases excluded)."""
        layers = (self.encoder, self.decoder, self.feature_encoder)
        return sum(layer.weight.pow(2).sum() for layer in layers if layer is not None)


@register("autorec")
class AutoRec(TorchRecommender):
    """Item-based AutoRec: a one-hidden-layer autoencoder of the items' rating columns.

    Trained as the paper's, on the observed entries of each column (the missing ones are
    inputs of 0 and no part of the loss), with Adam over batches of items, early stopping on
    validation RMSE. It costs ``n_items x n_users x hidden`` a pass, whatever the number of
    ratings: meant for data up to ML-1M's size. A user folded in after training gets their
    decoder vector and bias by regularised least squares against the items' encodings (one
    ALS half-step, as ``mf`` folds users in).

    Examples:
        >>> AutoRec(hidden=64).config.hidden
        64
    """

    config_class = AutoRecConfig
    can_fold_in: ClassVar[bool] = True
    # 256 items a step at Adam's 0.003; patience 10: its validation RMSE creeps down for tens of epochs
    train_defaults: ClassVar[dict] = {"batch_size": 256, "lr": 0.003, "epochs": 300, "patience": 10}

    # its batches of item columns train by their own loop (Adam, no averaging, no full-train
    # pass), and an unset l2 is its reg / 2n
    unused_training: ClassVar[frozenset[str]] = frozenset(
        {"optimizer", "steps_per_epoch", "min_steps", "average", "full_train_share", "l2_scale"}
    )

    def _l2(self, n: int) -> float:
        return self.training.l2 if self.training.l2 is not None else self.config.reg / (2 * max(n, 1))

    def _build(self, train):
        columns = item_columns(train.users, train.items, train.ratings, (train.n_users, train.n_items), self.scale[0])
        return AutoRecNet(columns, self.config.hidden, self._network_features().get("item"))

    def _attribute_inputs(self) -> dict[str, float]:
        return {"item": self.config.item_attribute_input}

    def _train(self, fit_arrays, valid_arrays, options) -> None:
        cfg = self.training
        self.net = net = self._build(self._input_ratings()).to(dtype=cfg.torch_dtype())
        rated = np.flatnonzero(np.diff(net.columns.indptr) > 0)
        l2 = self._l2(len(fit_arrays[0]))
        shift = 1.0 - self.scale[0]  # targets are ratings; inputs are ratings + shift
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)

        def steps(epoch):
            order = rated[torch.randperm(len(rated), generator=generator).numpy()]
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                x = net.dense(batch)
                seen = x != 0
                out = net.decoder(net.encode(batch, x))
                error = torch.where(seen, out - (x - shift), torch.zeros((), dtype=x.dtype))
                yield error.pow(2).sum() / seen.sum().clamp(min=1) + l2 * net.penalty()

        # without a validation share (valid_fraction 0), the epoch of lowest training RMSE
        # (on up to 100,000 of the ratings), so that the last epochs are kept
        check = valid_arrays if len(valid_arrays[0]) else tuple(a[:100_000] for a in fit_arrays)

        def validate():
            pred = np.clip(self._predict_index(check[0], check[1]), *self.scale)
            return float(np.sqrt(np.mean((pred - check[2]) ** 2)))

        batches = -(-len(rated) // cfg.batch_size)
        trainer = StepTrainer(cfg.lr, cfg.epochs, cfg.patience, options, steps_per_epoch=batches, metric="rmse")
        self.history = trainer.fit(net, steps, validate)

    @torch.no_grad()
    def _predict_index(self, users, items):
        u, i = (torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (users, items))
        return self.net(u, i).float().numpy()

    @torch.no_grad()
    def _fold_in(self, items, ratings):
        """The user's decoder vector and bias: ridge regression of their ratings on the
        items' encodings, with the training's L2 weight per rating (the bias unpenalised)."""
        h = self.net.encode(np.asarray(items, dtype=np.int64))
        return ridge_with_bias(h, torch.as_tensor(ratings), self._l2(len(self.inputs_[0])), bias_reg=1e-6)

    @torch.no_grad()
    def _predict_folded(self, state, items):
        w, b = state
        return (self.net.encode(np.asarray(items, dtype=np.int64)).double() @ w + b).float().numpy()

    @classmethod
    def search_space(cls, trial) -> dict:
        """Learning rate, item batch, hidden units and lambda."""
        return {
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
            "hidden": trial.suggest_int("hidden", 64, 1000, log=True),
            "reg": trial.suggest_float("reg", 0.1, 1000.0, log=True),
        }

    @classmethod
    def unregularised(cls) -> dict:
        """No weight penalty and no early stopping."""
        return {"reg": 0.0, "patience": 0}
