"""NeuMF made to rank items for lists: the seed's GMF and MLP branches over rating vectors,
trained with a softmax over every item (the multinomial likelihood of Mult-VAE/DAE, Liang
et al. 2018) instead of the squared error of ratings.

A user is their row of the interaction matrix (every training interaction, or rating, as a
1), dropped out at random and normalised while training (a denoising autoencoder, as the
rating networks' input dropout), projected by :class:`~neucf.models.layers.SparseRowProjection`
to a tanh layer; an item is its id's vector (optionally plus the projection of its column: the users who
have it). The GMF branch is the element-wise product of the two, weighted; the MLP
branch their concatenation through ``layers`` dense layers (the first taken as two products,
one per side, so a user is scored against every item at once); an item bias is added. The
scores of a user's items are a softmax over all items, and training maximises the
likelihood of the user's own items, early stopping on validation NDCG@10.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2, 2, 3], [1, 2, 1, 2, 1], implicit=True)
    >>> model = NeuMFRanking(factors=4, mlp_factors=2, epochs=2).fit(r)
    >>> model.recommend(3, k=1)["item"].tolist()
    [2]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from ..training import StepTrainer, help_metadata, resolve_device, seeded
from .layers import DenseBlock, SparseRowProjection
from .ranking import RankingConfig, RankingModel, interactions
from .registry import register


@dataclass
class RankingNetworkConfig(RankingConfig):
    """The ranking NeuMF's sizes and training.

    Attributes:
        factors: units of the GMF branch (and of each side's tanh layer).
        mlp_factors: units of the MLP branch (0: GMF alone).
        layers: dense layers in the MLP branch.
        alpha: LeakyReLU slope of the MLP branch.
        input_dropout: share of a user's row (and of an item's column) dropped while training.
        input_norm: each row is divided by its number of entries ** this.
        l2: weight of the squared weights of the projections and id vectors, added to the
            mean loss of a batch of users.
        lr: Adam's learning rate.
        batch_size: users per step.
        epochs: most passes over the users; early stopping on validation NDCG@10.
        patience: epochs without a better validation NDCG before stopping.
        decay: each epoch without a better validation NDCG multiplies the learning rate by this.
        item_columns: an item is its id's vector plus the projection of its column (the users
            who have it); else its id's vector alone (the default: as good, cheaper).

    The defaults were chosen on ML-1M with RecBole's protocol (``benchmarks/topn.py``) by its
    validation part's NDCG@10: a wide GMF branch learns the lists, a small MLP branch costs
    little; L2 3e-3 of 1e-4, 1e-3, 3e-3 and 1e-2; a halved rate on each plateau.

    Examples:
        >>> RankingNetworkConfig().factors
        256
    """

    factors: int = field(default=256, metadata=help_metadata("Units per projection / MLP layer (seed 30)."))
    mlp_factors: int = field(default=8, metadata=help_metadata("Ranking NeuMF: units of the MLP branch (0: GMF only)."))
    layers: int = field(default=1, metadata=help_metadata("Dense layers in the MLP branch (seed 5)."))
    alpha: float = field(default=0.4, metadata=help_metadata("LeakyReLU slope (seed 0.4)."))
    input_dropout: float = field(
        default=0.5, metadata=help_metadata("Share of input rating-vector entries dropped while training.")
    )
    input_norm: float = field(
        default=0.5, metadata=help_metadata("Divide each rating vector by its count ** this (0: raw).")
    )
    l2: float = field(default=3e-3, metadata=help_metadata("Ranking NeuMF: L2 on projections and id vectors."))
    lr: float = field(default=1e-3, metadata=help_metadata("Adam learning rate."))
    batch_size: int = field(default=256, metadata=help_metadata("Ranking NeuMF: users per step."))
    epochs: int = field(default=60, metadata=help_metadata("Most epochs."))
    patience: int = field(default=5, metadata=help_metadata("Early-stopping patience in epochs (0: off)."))
    decay: float = field(
        default=0.5,
        metadata=help_metadata("Ranking NeuMF: an epoch without a better validation NDCG multiplies lr by this."),
    )
    item_columns: bool = field(
        default=False,
        metadata=help_metadata(
            "Ranking NeuMF: an item is its id's vector plus its column's projection (else the id's alone)."
        ),
    )

    def __post_init__(self):
        if self.factors < 1 or self.mlp_factors < 0 or self.layers < 0:
            raise UsageError("factors must be >= 1, mlp_factors and layers >= 0")
        if not 0 <= self.input_dropout < 1:
            raise UsageError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if not (self.lr > 0 and np.isfinite(self.lr)) or not (self.l2 >= 0 and np.isfinite(self.l2)):
            raise UsageError("lr must be > 0 and l2 >= 0")
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 0:
            raise UsageError("batch_size and epochs must be >= 1, patience >= 0")
        if not 0 < self.decay <= 1:
            raise UsageError(
                f"decay must be in (0, 1] (it multiplies lr after an epoch without improvement; 1 keeps lr), "
                f"got {self.decay:g}"
            )


class RankingNet(nn.Module):
    """Scores of users against every item (see the module docstring).

    Examples:
        >>> import scipy.sparse as sp
        >>> x = sp.csr_matrix(np.eye(3, dtype=np.float32))
        >>> net = RankingNet(x, x.T.tocsr(), RankingNetworkConfig(factors=4, mlp_factors=2))
        >>> net(torch.tensor([0, 2])).shape
        torch.Size([2, 3])
    """

    def __init__(self, user_rows, item_rows, config: RankingNetworkConfig):
        super().__init__()
        g, m = config.factors, config.mlp_factors
        self.gmf_factors, self.mlp_factors = g, m
        common = dict(dropout=config.input_dropout, norm=config.input_norm, init_std=0.1)
        self.user_projection = SparseRowProjection(user_rows, g + m, mode="bag", **common)
        self.item_projection = SparseRowProjection(item_rows, g + m, mode="full", ids=True, **common)
        # the items' id vectors start small, not at 0 (as the rating networks' do): the
        # softmax's gradient then reaches the user side from the first step
        nn.init.normal_(self.item_projection.row_embedding, std=0.01)
        self.item_columns = config.item_columns
        self.gmf_weight = nn.Parameter(torch.ones(g))
        self.item_bias = nn.Parameter(torch.zeros(item_rows.shape[0]))
        if m:
            self.first_user = nn.Linear(m, m)
            self.first_item = nn.Linear(m, m, bias=False)
            self.tower = DenseBlock(m, m, max(config.layers - 1, 0), config.alpha)
            self.alpha = config.alpha
            self.mlp_out = nn.Linear(m, 1, bias=False)
            nn.init.zeros_(self.mlp_out.weight)  # the MLP branch starts silent: GMF leads

    def represent_users(self, users: torch.Tensor) -> torch.Tensor:
        """The users' representations from their training rows (dropped out while training)."""
        return torch.tanh(self.user_projection(users))

    def represent_items(self) -> torch.Tensor:
        """Every item's representation: its id vector plus the projection of its column."""
        if not self.item_columns:
            return self.item_projection.row_embedding
        every = torch.arange(self.item_projection.shape[0], device=self.item_bias.device)
        return self.item_projection(every)

    def scores(self, p: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of users given by their representations ``p`` against every item."""
        q = self.represent_items() if q is None else q
        g = self.gmf_factors
        z = (p[:, :g] * self.gmf_weight) @ q[:, :g].T + self.item_bias
        if self.mlp_factors:
            first = self.first_user(p[:, g:])[:, None, :] + self.first_item(q[:, g:])[None, :, :]
            hidden = self.tower(F.leaky_relu(first, self.alpha))
            z = z + self.mlp_out(hidden).squeeze(-1)
        return z

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores(self.represent_users(users))

    def penalty(self) -> torch.Tensor:
        """The squared weights of both projections and the items' id vectors."""
        parts = (self.user_projection.weight, self.item_projection.weight, self.item_projection.row_embedding)
        return sum((w**2).sum() for w in parts)


@register("neumf")
class NeuMFRanking(RankingModel):
    """NeuMF for the ranking task (``--task ranking --model neumf``): see the module docstring."""

    config_class = RankingNetworkConfig
    fitted_by = "gradient"

    @classmethod
    def search_space(cls, trial) -> dict:
        """Units, L2, learning rate and input dropout."""
        return {
            "factors": trial.suggest_int("factors", 32, 512, log=True),
            "l2": trial.suggest_float("l2", 1e-5, 1e-2, log=True),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "input_dropout": trial.suggest_float("input_dropout", 0.1, 0.7),
        }

    def _fit(self, train, valid, options):
        cfg = self.config
        fit_part, check = self._split_for_settings(train, valid)
        device = resolve_device(options.device)
        seen = interactions(fit_part)
        users = np.flatnonzero(np.diff(seen.indptr) > 0)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with seeded(self.seed, device):
            net = RankingNet(seen, seen.T.tocsr(), cfg).to(device)
        self.net = net

        def steps(epoch):
            order = users[torch.randperm(len(users), generator=generator).numpy()]
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                targets = torch.from_numpy(seen[batch].toarray()).to(device)
                log_probs = F.log_softmax(net(torch.from_numpy(batch).to(device)), dim=1)
                likelihood = (log_probs * targets).sum(1).mean()
                yield -likelihood + cfg.l2 * net.penalty()

        def validate():
            return self._validation_ndcg(self._batch_scores, seen, check)

        batches = -(-len(users) // cfg.batch_size)
        with seeded(self.seed, device):
            trainer = StepTrainer(cfg.lr, cfg.epochs, cfg.patience, options, steps_per_epoch=batches, decay=cfg.decay)
            self.history = trainer.fit(net, steps, validate)
        if fit_part is not train:
            # settings and epochs chosen on the held-out share: the users' rows are read from
            # all of train (the network is kept as trained)
            self.net = self._rebuild(interactions(train), net.state_dict())
        self.net.to("cpu").eval()

    def _rebuild(self, matrix, state) -> RankingNet:
        net = RankingNet(matrix, matrix.T.tocsr(), self.config)
        net.load_state_dict(state)
        return net.eval()

    @torch.no_grad()
    def _batch_scores(self, users) -> np.ndarray:
        device = next(self.net.parameters()).device
        return self.net(torch.as_tensor(users, dtype=torch.int64, device=device)).float().cpu().numpy()

    @torch.no_grad()
    def _score_users(self, users, items):
        return self._batch_scores(users)[:, items]

    def _score_user(self, u, items, unseen=False):
        return self._score_users(np.array([u]), items)[0]

    def _predict_index(self, users, items):
        out = np.empty(len(users), np.float32)
        order = np.argsort(users, kind="stable")
        for user in np.unique(users):
            mine = order[users[order] == user]
            out[mine] = self._score_users(np.array([user]), items[mine])[0]
        return out

    @torch.no_grad()
    def _fold_in(self, items, ratings):
        cols = torch.from_numpy(np.asarray(items, dtype=np.int64))
        return torch.tanh(self.net.user_projection.project_row(cols, torch.ones(len(cols))))

    @torch.no_grad()
    def _predict_folded(self, p, items):
        return self.net.scores(p)[0, torch.from_numpy(np.asarray(items, dtype=np.int64))].float().numpy()

    def _state(self):
        return {"weights": self.net.state_dict()}

    def _restore(self, state, device):
        self.net = self._rebuild(self._training_interactions(), state["weights"]).to(resolve_device(device))
