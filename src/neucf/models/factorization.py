"""Latent factors for implicit feedback: ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle et
al. 2009), in torch, so that they run on CPU or CUDA, are deterministic under their seed, save
in neucf's model file and fold new users in.

Written here rather than taken from the ``implicit`` library (a benchmark peer): its BPR
trains with many threads at once (Hogwild), so one seed does not give one answer, it cannot
fold a user into BPR, and its GPU solvers are not in its PyPI wheels. ``benchmarks/topn.py``
runs both side by side.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 3], implicit=True)
    >>> model = ALS(factors=2, iterations=3).fit(r)
    >>> model.recommend(3, k=1)["item"].tolist()
    [2]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from ..errors import UsageError
from ..training import StepTrainer, _FunctionalOptimizer, help_metadata, resolve_device, seeded
from .ranking import RankingConfig, RankingModel, interactions
from .registry import register

log = logging.getLogger(__name__)


@dataclass
class FactorConfig(RankingConfig):
    """What both factor models take.

    Attributes:
        factors: latent dimensions of each user and item.

    Examples:
        >>> FactorConfig().factors
        64
    """

    factors: int = field(default=64, metadata=help_metadata("ALS/BPR: latent factors per user and item."))

    def __post_init__(self):
        if self.factors < 1:
            raise UsageError(f"factors must be >= 1, got {self.factors}")
        if not (self.l2 >= 0 and np.isfinite(self.l2)):
            raise UsageError(f"l2 must be >= 0, got {self.l2}")

    l2: float = 0.0  # each model's own default and help below


@dataclass
class ALSConfig(FactorConfig):
    """Implicit ALS.

    Attributes:
        l2: ``lambda`` of the penalty ``lambda (|x_u|^2 + |y_i|^2)``.
        confidence: Hu et al.'s alpha: an interaction's confidence is ``1 + confidence *
            weight`` (a missing one's: 1).
        iterations: alternating sweeps (each: every item, then every user).

    The defaults (64 factors, ``l2`` 10, ``confidence`` 2) are the best of a small grid on ML-1M
    with RecBole's protocol (``benchmarks/topn.py``'s), chosen on its validation part.

    Examples:
        >>> ALSConfig().iterations
        15
    """

    l2: float = field(default=10.0, metadata=help_metadata("ALS: L2 penalty on the factors (BPR: per triple)."))
    confidence: float = field(
        default=2.0, metadata=help_metadata("ALS: an interaction's confidence is 1 + this x its weight.")
    )
    iterations: int = field(default=15, metadata=help_metadata("ALS: alternating sweeps."))

    def __post_init__(self):
        super().__post_init__()
        if not (self.confidence >= 0 and np.isfinite(self.confidence)) or self.iterations < 1:
            raise UsageError("confidence must be >= 0 and iterations >= 1")


def _half_step(
    matrix: sp.csr_matrix, fixed: torch.Tensor, alpha: float, l2: float, budget: int = 1 << 21
) -> torch.Tensor:
    """One side's factors given the other's (``fixed``, ``Y``): each row solves
    ``(Y^T Y + Y^T (C_u - I) Y + l2 I) x_u = Y^T C_u p_u`` exactly, ``C_u`` holding ``1 +
    alpha * weight`` on the row's interactions. Rows are taken in chunks of similar length,
    each chunk's ``Y_u^T (C_u - I) Y_u`` one batched product of its rows' items padded to the
    chunk's longest row (at most about ``budget`` numbers of ``Y`` gathered at once)."""
    k = fixed.shape[1]
    gram = fixed.T @ fixed + l2 * torch.eye(k, dtype=fixed.dtype, device=fixed.device)
    # a zero row past the last: what the padding points at
    padded_fixed = torch.cat([fixed, torch.zeros((1, k), dtype=fixed.dtype, device=fixed.device)])
    out = torch.zeros((matrix.shape[0], k), dtype=fixed.dtype, device=fixed.device)
    counts = np.diff(matrix.indptr)
    order = np.argsort(counts, kind="stable")
    per_chunk = max(budget // k, 1)
    start = 0
    while start < len(order):
        stop = start + 1
        # grow the chunk while its padded size stays in the budget (rows sorted by length)
        while stop < len(order) and (stop + 1 - start) * max(int(counts[order[stop]]), 1) <= per_chunk:
            stop += 1
        rows = order[start:stop]
        width = max(int(counts[rows].max()), 1)
        lengths = counts[rows]
        slots = np.arange(width)[None, :] < lengths[:, None]
        index = np.full((len(rows), width), fixed.shape[0], dtype=np.int64)
        weight = np.zeros((len(rows), width), dtype=np.float32)
        starts = matrix.indptr[rows]
        flat = (starts[:, None] + np.arange(width)[None, :])[slots]
        index[slots], weight[slots] = matrix.indices[flat], matrix.data[flat]
        y = padded_fixed[torch.from_numpy(index).to(fixed.device)]
        confidence = alpha * torch.from_numpy(weight).to(fixed)
        system = gram + torch.bmm((y * confidence[..., None]).transpose(1, 2), y)
        rhs = (y * (1.0 + confidence)[..., None] * torch.from_numpy(slots).to(fixed)[..., None]).sum(1)
        out[torch.from_numpy(rows).to(fixed.device)] = torch.linalg.solve(system, rhs)
        start = stop
    return out


class _FactorModel(RankingModel):
    """Scores ``x_u . y_i`` (plus an item bias for BPR) from user and item factors."""

    def _score_users(self, users, items):
        return (self.user_factors_[users] @ self.item_factors_[items].T + self._item_bias(items)).astype(np.float32)

    def _score_user(self, u, items, unseen=False):
        return self._score_users(np.array([u]), items)[0]

    def _predict_index(self, users, items):
        dots = np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        return (dots + self._item_bias(items)).astype(np.float32)

    def _item_bias(self, items):
        return 0.0

    def _predict_folded(self, factors, items):
        return (self.item_factors_[items] @ factors + self._item_bias(items)).astype(np.float32)

    def _state(self):
        return {"users": torch.from_numpy(self.user_factors_), "items": torch.from_numpy(self.item_factors_)}

    def _restore(self, state, device):
        self.user_factors_, self.item_factors_ = state["users"].numpy(), state["items"].numpy()


@register("als")
class ALS(_FactorModel):
    """Implicit ALS (Hu, Koren & Volinsky 2008), exact least-squares solves for each user and
    item; a new user folds in by the same solve against the trained item factors (one ALS
    half-step, exactly what training ends with, so a known user's own row gives back their
    trained factors)."""

    config_class = ALSConfig
    uses_weights = True

    def memory_needed(self, n_users, n_items, n_ratings):
        """Adds the factors x factors systems each half-step solves at once (see :func:`_half_step`)."""
        k = self.config.factors
        rows_at_once = max(1, min(n_users + n_items, (1 << 21) // k // max(1, n_ratings // max(n_users, 1))))
        return super().memory_needed(n_users, n_items, n_ratings) + 4 * k * k * (3 * rows_at_once + 2)

    @classmethod
    def search_space(cls, trial) -> dict:
        """Factors, L2 and confidence."""
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "l2": trial.suggest_float("l2", 0.01, 100.0, log=True),
            "confidence": trial.suggest_float("confidence", 0.0, 20.0),
        }

    def _fit(self, train, valid, options):
        cfg = self.config
        device = resolve_device(options.device)
        matrix = interactions(train, weights=True)
        with seeded(self.seed, device), torch.no_grad():
            items = 0.01 * torch.randn(train.n_items, cfg.factors, device=device)
            users = _half_step(matrix, items, cfg.confidence, cfg.l2)
            for sweep in range(cfg.iterations):
                items = _half_step(matrix.T.tocsr(), users, cfg.confidence, cfg.l2)
                users = _half_step(matrix, items, cfg.confidence, cfg.l2)
                log.debug("als: sweep %d of %d", sweep + 1, cfg.iterations)
        self.user_factors_ = users.float().cpu().numpy()
        self.item_factors_ = items.float().cpu().numpy()

    def _fold_in(self, items, ratings):
        weights = np.ones(len(items), np.float32)
        row = sp.csr_matrix((weights, (np.zeros(len(items), np.int64), items)), shape=(1, len(self.item_ids)))
        fixed = torch.from_numpy(self.item_factors_)
        return _half_step(row, fixed, self.config.confidence, self.config.l2)[0].float().numpy()


@dataclass
class BPRConfig(FactorConfig):
    """BPR's training.

    Attributes:
        l2: L2 penalty on the factors of each triple, a mean over the batch.
        lr: Adam's learning rate.
        batch_size: (user, liked item, other item) triples per step.
        epochs: most passes over the interactions; early stopping on validation NDCG@10.
        patience: epochs without a better validation NDCG before stopping.

    Examples:
        >>> BPRConfig().epochs
        100
    """

    l2: float = field(default=0.01, metadata=help_metadata("ALS: L2 penalty on the factors (BPR: per triple)."))
    lr: float = field(default=0.003, metadata=help_metadata("BPR: Adam learning rate."))
    batch_size: int = field(default=8192, metadata=help_metadata("BPR: triples per step."))
    epochs: int = field(default=100, metadata=help_metadata("BPR: most epochs."))
    patience: int = field(default=5, metadata=help_metadata("BPR: early-stopping patience in epochs."))

    def __post_init__(self):
        super().__post_init__()
        if not (self.lr > 0 and np.isfinite(self.lr)) or self.batch_size < 1 or self.epochs < 1 or self.patience < 0:
            raise UsageError("lr must be > 0, batch_size and epochs >= 1, patience >= 0")


class FactorNet(torch.nn.Module):
    """User and item factors and item biases: ``x_u . y_i + b_i`` (BPR's scorer).

    Examples:
        >>> FactorNet(3, 4, 2, seed_std=0.01).item_factors.shape
        torch.Size([4, 2])
    """

    def __init__(self, n_users: int, n_items: int, factors: int, seed_std: float = 0.01):
        super().__init__()
        self.user_factors = torch.nn.Parameter(seed_std * torch.randn(n_users, factors))
        self.item_factors = torch.nn.Parameter(seed_std * torch.randn(n_items, factors))
        self.item_biases = torch.nn.Parameter(torch.zeros(n_items))


@register("bpr")
class BPR(_FactorModel):
    """BPR (Rendle et al. 2009): ``x_u . y_i + b_i``, trained by Adam on ``-log sigmoid(s_ui -
    s_uj)`` for each interaction ``i`` and an item ``j`` drawn at random, early stopping on
    validation NDCG@10. A new user's factors are fitted to their items by the same loss
    against every other item, the item side fixed (deterministic: no sampling)."""

    config_class = BPRConfig
    fitted_by = "gradient"

    @classmethod
    def search_space(cls, trial) -> dict:
        """Factors, learning rate and L2."""
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "lr": trial.suggest_float("lr", 3e-4, 3e-2, log=True),
            "l2": trial.suggest_float("l2", 1e-4, 1e-1, log=True),
        }

    def _item_bias(self, items):
        return self.item_biases_[items]

    def _fit(self, train, valid, options):
        cfg = self.config
        fit_part, check = self._split_for_settings(train, valid)
        device = resolve_device(options.device)
        seen = interactions(fit_part)
        users = torch.from_numpy(fit_part.users.astype(np.int64)).to(device)
        liked = torch.from_numpy(fit_part.items.astype(np.int64)).to(device)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with seeded(self.seed, device):
            net = FactorNet(train.n_users, train.n_items, cfg.factors).to(device)

        def steps(epoch):
            order = torch.randperm(len(users), generator=generator).to(device)
            others = torch.randint(0, train.n_items, (len(users),), generator=generator).to(device)
            for start in range(0, len(users), cfg.batch_size):
                at = order[start : start + cfg.batch_size]
                u, i, j = users[at], liked[at], others[at]
                x, yi, yj = net.user_factors[u], net.item_factors[i], net.item_factors[j]
                margin = (x * (yi - yj)).sum(1) + net.item_biases[i] - net.item_biases[j]
                penalty = cfg.l2 * ((x**2).sum(1) + (yi**2).sum(1) + (yj**2).sum(1)).mean()
                yield -F.logsigmoid(margin).mean() + penalty

        def validate():
            self._take(net)
            return self._validation_ndcg(lambda b: self._score_users(b, np.arange(train.n_items)), seen, check)

        batches = -(-len(users) // cfg.batch_size)
        trainer = StepTrainer(cfg.lr, cfg.epochs, cfg.patience, options, steps_per_epoch=batches)
        self.history = trainer.fit(net, steps, validate)
        self._take(net)

    def _take(self, net: FactorNet) -> None:
        self.user_factors_ = net.user_factors.detach().cpu().numpy()
        self.item_factors_ = net.item_factors.detach().cpu().numpy()
        self.item_biases_ = net.item_biases.detach().cpu().numpy()

    def _fold_in(self, items, ratings, steps: int = 100):
        factors = torch.nn.Parameter(torch.zeros(self.config.factors))
        item_factors = torch.from_numpy(self.item_factors_)
        item_biases = torch.from_numpy(self.item_biases_)
        known = torch.from_numpy(np.flatnonzero(self.known_items))
        liked = torch.from_numpy(np.asarray(items, dtype=np.int64))
        others = known[~torch.isin(known, liked)]
        optimizer = _FunctionalOptimizer([factors], "adam", 0.05)
        with torch.enable_grad():
            for _ in range(steps):
                scores = item_factors @ factors + item_biases
                margin = scores[liked][:, None] - scores[others][None, :]
                loss = -F.logsigmoid(margin).mean() + self.config.l2 * (factors**2).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return factors.detach().numpy()

    def _state(self):
        return {**super()._state(), "biases": torch.from_numpy(self.item_biases_)}

    def _restore(self, state, device):
        super()._restore(state, device)
        self.item_biases_ = state["biases"].numpy()
