"""EASE for catalogues of any size: each item's weights restricted to its nearest neighbours.

EASE (:mod:`~neucf.models.ease`) solves one dense items x items inverse: memory items^2, time
items^3, refused past a few tens of thousands of items. Here item ``j`` is predicted from its
``neighbours`` most similar items ``N_j`` alone (cosine of their columns of ``X``), each by
its own small ridge regression,

    ``b_j = argmin ||X_j - X_{N_j} b||^2 + ||Lambda^(1/2) b||^2 = (G[N_j, N_j] + Lambda)^-1 G[N_j, j]``

with ``G = X^T X`` kept sparse and ``Lambda`` EASE's (``lambda``, plus EDLAE's dropout term
``p / (1 - p) G[a, a]``). This is EASE with its weights' support fixed in advance (as SLIM's
neighbourhood-restricted form and SANSA's sparse approximate inverse also do), so its memory
and time grow with the Gram matrix's non-zeros and ``items x neighbours^3``, never with
items squared: one batched solve of ``neighbours x neighbours`` systems. The neighbourhoods
and their Gram blocks are gathered once; every ``lambda`` of the validation grid reuses them.

An item among very many items' neighbourhoods (a popular one) would score all of them: its
row of ``B`` grows with the catalogue, and so would the scores of every user who has it. Each
item's row keeps its ``fan_out`` strongest weights (by absolute value), so a user's scores
hold at most ``history x fan_out`` entries whatever the catalogue size.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2, 2, 3], [1, 2, 1, 2, 1], implicit=True)
    >>> model = SparseEASE(l2=1.0, dropout=0.0, neighbours=2).fit(r)
    >>> model.recommend(3, k=1)["item"].tolist()
    [2]
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import UsageError
from ..training import _progress, help_metadata
from .ease import check_penalties
from .ranking import RankingConfig, RankingModel, interactions
from .registry import register

log = logging.getLogger(__name__)

#: items solved at once (their Gram blocks: batch x neighbours^2 numbers)
BATCH = 2048
#: at most this many validation users score each setting of the grid (a seeded sample)
VALIDATION_USERS = 10_000
#: the shares of the mean item count tried for lambda when it is not given; the dropout
#: emphasis tried when it is not given (on the generated sets and MovieLens it beat 0 at every
#: lambda, and each setting costs a validation pass over the whole catalogue)
SHARES = (1.0, 2.0, 4.0, 8.0, 16.0)
DROPOUT = 0.5
#: an item's row of ``B`` keeps this many times ``neighbours`` weights when ``fan_out`` is unset:
#: all but the most popular items' rows stay whole (a row holds ``neighbours`` weights on average)
FAN_OUT = 4


@dataclass
class SparseEASEConfig(RankingConfig):
    """The neighbourhood EASE's sizes and regularisation.

    Attributes:
        neighbours: weights per item: the items (by cosine of their columns) it is predicted from.
        l2: lambda (unset: chosen on the validation part from multiples of the mean number of
            interactions per item, :data:`SHARES`).
        dropout: EDLAE's dropout emphasis ``p`` (unset: :data:`DROPOUT`).
        fan_out: the most items one item scores (its row of ``B``: its strongest weights in
            other items' neighbourhoods; unset: :data:`FAN_OUT` x ``neighbours``).

    Examples:
        >>> SparseEASEConfig().neighbours
        50
    """

    neighbours: int = field(default=50, metadata=help_metadata("Sparse EASE: weights per item (its neighbours)."))
    l2: float | None = field(
        default=None, metadata=help_metadata("EASE: L2 penalty lambda (unset: chosen on validation).")
    )
    dropout: float | None = field(
        default=None, metadata=help_metadata("EASE: dropout emphasis p in [0, 1) (EDLAE; unset: chosen on validation).")
    )
    fan_out: int | None = field(
        default=None, metadata=help_metadata("Sparse EASE: the most items one item scores (unset: 4 x neighbours).")
    )

    def __post_init__(self):
        check_penalties(self.l2, self.dropout)
        if self.neighbours < 1:
            raise UsageError(f"neighbours must be >= 1, got {self.neighbours}")
        if self.fan_out is not None and self.fan_out < 1:
            raise UsageError(f"fan_out must be >= 1, got {self.fan_out}")


def gram(x: sp.csr_matrix) -> sp.csr_matrix:
    """``X^T X`` as a sparse matrix with sorted indices (float32: counts are exact to 2^24)."""
    g = (x.T.tocsr() @ x).tocsr()
    g.sort_indices()
    return g.astype(np.float32, copy=False)


def gram_entries(x: sp.csr_matrix) -> int:
    """How many products ``X^T X`` sums (an upper bound of its non-zeros): sum of squared row counts."""
    counts = np.diff(x.indptr).astype(np.int64)
    return int((counts**2).sum())


def nearest(g: sp.csr_matrix, k: int, options=None, chunk: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest items by cosine (ties: lower index first), as an (items, k)
    index array padded with the item itself where it has fewer, and the mask of real ones.
    Rows go in blocks of about ``chunk`` Gram entries (the sort's memory); a progress bar (in
    items) when ``options`` (:class:`~neucf.training.FitOptions`) asks for one."""
    n = g.shape[0]
    count = g.diagonal().astype(np.float64)
    index = np.tile(np.arange(n)[:, None], (1, k))
    first = 0
    with _progress(options, n) if options is not None else nullcontext() as bar:
        while first < n:
            last = max(int(np.searchsorted(g.indptr, g.indptr[first] + chunk, side="right")) - 1, first + 1)
            last = min(last, n)
            lo, hi = g.indptr[first], g.indptr[last]
            rows = np.repeat(np.arange(first, last), np.diff(g.indptr[first : last + 1]))
            cols = g.indices[lo:hi]
            cosine = g.data[lo:hi] / np.sqrt(np.maximum(count[rows] * count[cols], 1.0))
            # one sort by (row, -cosine): the item itself goes last in its row
            key = (rows - first) + 0.5 * (1.0 - np.clip(cosine, 0.0, 1.0))
            own = rows == cols
            key[own] = rows[own] - first + 0.75
            order = np.argsort(key, kind="stable")
            rank = np.arange(len(order)) - (g.indptr[rows] - lo)
            sorted_cols = cols[order]
            keep = (rank < k) & (sorted_cols != rows)
            index[rows[keep], rank[keep]] = sorted_cols[keep]
            if bar is not None:
                bar.update(last - first)
            first = last
    return index, index != np.arange(n)[:, None]


def _lookup(g: sp.csr_matrix, keys: torch.Tensor, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``g[a, b]`` elementwise (0 where absent), by binary search in ``keys`` (row x n + col)."""
    query = torch.from_numpy(a.astype(np.int64) * g.shape[1] + b)
    pos = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
    found = keys[pos] == query
    return torch.where(found, torch.from_numpy(g.data)[pos], 0.0).numpy()


def neighbourhood_weights(
    g: sp.csr_matrix, index: np.ndarray, real: np.ndarray, settings: list[tuple[float, float]], options
) -> list[np.ndarray]:
    """Each item's weights on its neighbours ``index`` for every ``(lambda, dropout)`` of
    ``settings``: one (items, k) array per setting (0 where ``real`` is False); a progress
    bar when ``options`` (:class:`~neucf.training.FitOptions`) asks for one."""
    n, k = index.shape
    keys = torch.from_numpy(np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr)) * n + g.indices)
    count = g.diagonal().astype(np.float64)
    out = [np.zeros((n, k), np.float32) for _ in settings]
    eye = torch.eye(k, dtype=torch.float64)
    above, below = np.triu_indices(k, 1)
    with _progress(options, -(-n // BATCH)) as bar:
        for start in range(0, n, BATCH):
            idx, ok = index[start : start + BATCH], real[start : start + BATCH]
            m = len(idx)
            # the blocks are symmetric with the counts on their diagonals: look up one triangle
            upper = _lookup(g, keys, idx[:, above].ravel(), idx[:, below].ravel())
            block = torch.zeros((m, k, k), dtype=torch.float64)
            block[:, above, below] = torch.from_numpy(upper.reshape(m, -1)).double()
            block = block + block.transpose(1, 2) + torch.diag_embed(torch.from_numpy(count[idx]))
            both = torch.from_numpy(ok[:, :, None] & ok[:, None, :])
            block = torch.where(both, block, 0.0)
            target = _lookup(g, keys, idx.ravel(), np.repeat(np.arange(start, start + m), k))
            target = torch.from_numpy(np.where(ok.ravel(), target, 0.0).reshape(m, k, 1)).double()
            diag = torch.from_numpy(count[idx])
            for weights, (l2, p) in zip(out, settings):
                penalty = l2 + (p / (1.0 - p)) * diag if p else torch.full_like(diag, l2)
                system = block + eye * penalty[:, :, None]
                weights[start : start + m] = torch.linalg.solve(system, target)[:, :, 0].float().numpy()
            if bar is not None:
                bar.update()
    return out


def cap_fan_out(index: np.ndarray, weights: np.ndarray, most: int) -> np.ndarray:
    """``weights`` (items, k) on ``index`` with each item's non-zero weights across every
    neighbourhood (its row of ``B``) cut to its ``most`` largest in absolute value (ties: the
    earlier neighbourhood first); only items over the cap are sorted.

    Examples:
        >>> index = np.array([[1, 2], [0, 2], [0, 1]])
        >>> cap_fan_out(index, np.array([[0.5, 0.1], [0.3, 0.2], [0.4, 0.6]]), 1).tolist()
        [[0.0, 0.0], [0.0, 0.2], [0.4, 0.6]]
    """
    flat = weights.ravel()
    source = np.where(flat != 0, index.ravel(), len(index))  # zeros (padding) count for no item
    counts = np.bincount(source, minlength=len(index) + 1)
    counts[-1] = 0
    over = np.flatnonzero(counts[source] > most)
    if not len(over):
        return weights
    order = np.lexsort((-np.abs(flat[over]), source[over]))
    ranked = source[over][order]
    rank = np.arange(len(ranked)) - np.searchsorted(ranked, ranked)
    out = flat.copy()
    out[over[order[rank >= most]]] = 0.0
    return out.reshape(weights.shape)


def weight_matrix(index: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """The items x items matrix ``B`` with ``B[index[j], j] = weights[j]`` (zeros dropped)."""
    n, k = index.shape
    b = sp.csc_matrix((weights.ravel(), index.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)).tocsr()
    b.eliminate_zeros()
    return b


@register("sparse-ease")
class SparseEASE(RankingModel):
    """EASE with each item's weights on its nearest neighbours only: any catalogue size (see the
    module docstring). ``l2`` chosen on the validation part unless given."""

    config_class = SparseEASEConfig
    smaller: str = "give fewer --neighbours, or keep fewer users with very long histories"

    @classmethod
    def search_space(cls, trial) -> dict:
        """Lambda, the dropout emphasis and the neighbourhood size."""
        return {
            "l2": trial.suggest_float("l2", 1.0, 10_000.0, log=True),
            "dropout": trial.suggest_categorical("dropout", [0.0, 0.25, 0.5]),
            "neighbours": trial.suggest_int("neighbours", 16, 200, log=True),
        }

    def _grid(self, train) -> list[tuple[float, float]]:
        per_item = len(train) / max(len(np.unique(train.items)), 1)
        p = DROPOUT if self.config.dropout is None else self.config.dropout
        if self.config.l2 is not None:
            return [(self.config.l2, p)]
        return [(share * per_item, p) for share in SHARES]

    def check_size(self, train):
        """Refuse data whose Gram matrix (bounded by the sum of squared history lengths) and
        neighbourhood blocks would not fit in memory."""
        from .memory import check_memory

        x = interactions(train)
        k = self.config.neighbours
        # the Gram matrix (8 bytes an entry) and its search keys (8), at most one entry a product
        needed = 20 * gram_entries(x) + 8 * train.n_items * k * (len(self._grid(train)) + 2) + 64 * len(train)
        needed += 24 * BATCH * k * k
        check_memory(needed, f"sparse EASE on {len(train):,} interactions", self.smaller)

    def _solve(self, x, settings, options):
        log.info("sparse-ease: the Gram matrix of %s interactions", f"{x.nnz:,}")
        g = gram(x)
        index, real = nearest(g, min(self.config.neighbours, max(x.shape[1] - 1, 1)), options)
        log.info("sparse-ease: %s items, %s Gram entries, %d neighbours each", f"{g.shape[0]:,}", f"{g.nnz:,}",
                 index.shape[1])  # fmt: skip
        most = self.config.fan_out or FAN_OUT * index.shape[1]
        return index, [cap_fan_out(index, w, most) for w in neighbourhood_weights(g, index, real, settings, options)]

    def _fit(self, train, valid, options):
        grid = self._grid(train)
        if len(grid) > 1:
            fit_part, check = self._split_for_settings(train, valid)
            x = interactions(fit_part)
            index, solved = self._solve(x, grid, options)
            check = self._validation_sample(check, VALIDATION_USERS)
            scored = []
            for (l2, p), weights in zip(grid, solved):
                b = weight_matrix(index, weights)
                ndcg = self._validation_ndcg(lambda users, b=b: x[users] @ b, x, check)
                scored.append((ndcg, l2, p))
                log.info("sparse-ease: lambda %.4g, dropout %g: validation NDCG@10 %.4f", l2, p, ndcg)
            _, l2, p = max(scored, key=lambda s: (np.nan_to_num(s[0], nan=-1.0), -s[1]))
            if fit_part is train:
                weights = solved[grid.index((l2, p))]
            else:
                index, (weights,) = self._solve(interactions(train), [(l2, p)], options)
        else:
            ((l2, p),) = grid
            index, (weights,) = self._solve(interactions(train), grid, options)
        self.l2_, self.dropout_ = float(l2), float(p)
        self.index_, self.weights_ = index.astype(np.int32), weights
        self._b = None
        self._inputs = None

    @property
    def b_(self) -> sp.csr_matrix:
        """The items x items weights as a sparse matrix."""
        if self._b is None:
            self._b = weight_matrix(self.index_.astype(np.int64), self.weights_)
        return self._b

    @property
    def _x(self) -> sp.csr_matrix:
        if getattr(self, "_inputs", None) is None:
            self._inputs = self._training_interactions()
        return self._inputs

    def _sparse_scores(self, users):
        return (self._x[users] @ self.b_).tocsr()

    def _score_users(self, users, items):
        scores = self._sparse_scores(users).toarray()
        return scores if len(items) == scores.shape[1] and (items == np.arange(len(items))).all() else scores[:, items]

    def _score_user(self, u, items, unseen=False):
        return self._score_users(np.array([u]), items)[0]

    def _predict_index(self, users, items):
        out = np.empty(len(users), np.float32)
        b = self.b_.tocsc()
        for start in range(0, len(users), 4096):
            u, i = users[start : start + 4096], items[start : start + 4096]
            out[start : start + len(u)] = np.asarray(self._x[u].multiply(b[:, i].T).sum(1)).ravel()
        return out

    def _fold_in(self, items, ratings):
        return np.asarray(items, dtype=np.int64)

    def _predict_folded(self, items_seen, items):
        return np.asarray(self.b_[items_seen].sum(0)).ravel()[items]

    def _state(self):
        return {
            "index": torch.from_numpy(self.index_),
            "weights": torch.from_numpy(self.weights_),
            "chosen": [self.l2_, self.dropout_],
        }

    def _restore(self, state, device):
        self.index_, self.weights_ = state["index"].numpy(), state["weights"].numpy()
        self.l2_, self.dropout_ = state["chosen"]
        self._b = None
        self._inputs = None
