"""EASE (Steck 2019): a closed-form item-item model for top-N lists, and its dropout-
regularised form (DLAE/EDLAE, Steck 2020).

``B = argmin ||X - X B||^2 + ||Lambda^(1/2) B||^2`` subject to ``diag(B) = 0``, with ``X`` the
users x items interactions; the answer is ``B = I - P diag(1 / diag(P))`` with
``P = (X^T X + Lambda)^-1``. EASE's ``Lambda = lambda I``; dropout's adds ``p / (1 - p)
diag(X^T X)`` (what training the same linear model with input dropout ``p`` minimises), which
penalises a popular item's weights more. A user's scores are ``x_u B``: a new user folds in
for free. One items x items inverse: fast up to tens of thousands of items, memory items^2.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2, 2, 3], [1, 2, 1, 2, 1], implicit=True)
    >>> model = EASE(l2=1.0, dropout=0.0).fit(r)
    >>> model.recommend(3, k=1)["item"].tolist()
    [2]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import UsageError
from . import memory
from .ranking import RankingConfig, RankingModel, interactions
from .registry import register

log = logging.getLogger(__name__)

#: the shares of the mean item count tried for lambda when it is not given, per dropout p
GRID = {0.0: (1.0, 2.0, 4.0, 8.0, 16.0), 0.5: (0.5, 1.0, 2.0, 4.0)}


def check_item_count(n_items: int, what: str = "EASE") -> None:
    """Refuse, before any work, an item count whose items x items matrices (three of 8 bytes
    an entry while solving) would take more than half of the memory this machine allows
    (:func:`~neucf.models.memory.memory_bytes`)."""
    allowed = memory.memory_bytes()
    if allowed is None:
        return
    most = int(np.sqrt(allowed / 2 / 24))
    if n_items > most:
        raise UsageError(
            f"{what} needs items x items matrices: {n_items:,} items take {24 * n_items**2 / 1e9:.0f} GB, and this "
            f"machine's {allowed / 1e9:.0f} GB allow at most {most:,} items; keep fewer (--min-item-ratings, "
            "--k-core) or use --model sparse-ease (EASE on each item's nearest neighbours: any size) or --model als"
        )


def solve(gram: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """EASE's (``dropout`` 0) or EDLAE's item-item weights from the Gram matrix ``X^T X``."""
    return solve_with_diagonal(gram, l2, dropout)[0]


def solve_with_diagonal(gram: np.ndarray, l2: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`solve`'s weights ``B`` and the diagonal ``d`` of ``P = (X^T X + Lambda)^-1``,
    which with ``B`` gives back ``P = (I - B) diag(d)`` (what an item added later is solved with,
    :meth:`EASE._fold_in_item`)."""
    penalty = np.full(len(gram), float(l2))
    if dropout:
        penalty += dropout / (1.0 - dropout) * np.diag(gram)
    inverse = np.linalg.inv(gram + np.diag(penalty))
    diagonal = np.diag(inverse).copy()
    weights = -inverse / diagonal
    np.fill_diagonal(weights, 0.0)
    return weights, diagonal


@dataclass
class EASEConfig(RankingConfig):
    """EASE's regularisation.

    Attributes:
        l2: lambda, the L2 penalty on the item weights; unset: chosen on the validation part
            (NDCG@10) from multiples of the mean number of interactions per item
            (:data:`GRID`).
        dropout: the dropout-emphasis ``p`` of EDLAE (0: EASE as published); unset: chosen
            on the validation part with ``l2`` (0 or 0.5).

    Examples:
        >>> EASEConfig(l2=500.0).dropout is None
        True
    """

    l2: float | None = field(default=None, metadata={"help": "EASE: L2 penalty lambda (unset: chosen on validation)."})
    dropout: float | None = field(
        default=None, metadata={"help": "EASE: dropout emphasis p in [0, 1) (EDLAE; unset: chosen on validation)."}
    )

    def __post_init__(self):
        check_penalties(self.l2, self.dropout)


#: the largest lambda taken: past it EASE's weights only shrink toward 0 (the lists stay those of
#: this lambda) until they vanish in 32-bit floats and every score is 0
MOST_L2 = 1e10


def check_penalties(l2: float | None, dropout: float | None) -> None:
    """EASE's lambda in (0, :data:`MOST_L2`] and dropout emphasis in [0, 1) (None: chosen).

    Examples:
        >>> check_penalties(1e308, None)
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: l2 must be a positive number up to 1e+10 (larger ones only shrink every weight toward 0), got 1e+308
    """
    if l2 is not None and not 0 < l2 <= MOST_L2:
        raise UsageError(
            f"l2 must be a positive number up to {MOST_L2:g} (larger ones only shrink every weight toward 0), got {l2:g}"
        )
    if dropout is not None and not 0 <= dropout < 1:
        raise UsageError(f"dropout must be in [0, 1), got {dropout}")


@register("ease")
class EASE(RankingModel):
    """EASE (Steck 2019), with the dropout-emphasis term of EDLAE (Steck 2020) as an option;
    ``l2`` and ``dropout`` chosen on the validation part unless given. Scores ``x_u B``.

    An item added after training is folded in from its users (:meth:`add_items`) by the same
    ridge regression, on the items of the fit: its column of weights ``b = P X^T x``, with
    ``P = (I - B) diag(d)`` from the weights and the diagonal kept from the fit."""

    config_class = EASEConfig
    can_fold_in_items = True

    @classmethod
    def search_space(cls, trial) -> dict:
        """Lambda and the dropout emphasis."""
        return {
            "l2": trial.suggest_float("l2", 10.0, 10_000.0, log=True),
            "dropout": trial.suggest_categorical("dropout", [0.0, 0.25, 0.5]),
        }

    def _grid(self, train) -> list[tuple[float, float]]:
        """The (lambda, dropout) pairs tried: the given ones, the unset ones from :data:`GRID`."""
        per_item = len(train) / max(len(np.unique(train.items)), 1)
        drops = list(GRID) if self.config.dropout is None else [self.config.dropout]
        if self.config.l2 is not None:
            return [(self.config.l2, p) for p in drops]
        return [(share * per_item, p) for p in drops for share in GRID.get(p, GRID[0.0])]

    def check_size(self, train):
        """Refuse an item count whose items x items matrices do not fit (:func:`check_item_count`)."""
        check_item_count(train.n_items)

    def _fit(self, train, valid, options):
        grid = self._grid(train)
        if len(grid) > 1:
            fit_part, check = self._split_for_settings(train, valid)
            x = interactions(fit_part)
            gram = (x.T @ x).toarray().astype(np.float64)
            scored = []
            for l2, p in grid:
                weights = solve(gram, l2, p).astype(np.float32)
                scored.append((self._validation_ndcg(lambda users, w=weights: x[users] @ w, x, check), l2, p))
                log.info("ease: lambda %.4g, dropout %g: validation NDCG@10 %.4f", l2, p, scored[-1][0])
            _, l2, p = max(scored, key=lambda s: (np.nan_to_num(s[0], nan=-1.0), -s[1]))
        else:
            l2, p = grid[0]
        self.l2_, self.dropout_ = float(l2), float(p)
        x = interactions(train)
        weights, diagonal = solve_with_diagonal((x.T @ x).toarray().astype(np.float64), l2, p)
        self.weights_, self.diagonal_ = weights.astype(np.float32), diagonal
        self._inputs = x

    @property
    def _x(self) -> sp.csr_matrix:
        if getattr(self, "_inputs", None) is None:
            self._inputs = self._training_interactions()
        return self._inputs

    def _score_users(self, users, items):
        return np.asarray(self._x[users] @ self.weights_[:, items])

    def _score_user(self, u, items, unseen=False):
        return self._score_users(np.array([u]), items)[0]

    def _predict_index(self, users, items):
        out = np.empty(len(users), np.float32)
        for start in range(0, len(users), 4096):
            u, i = users[start : start + 4096], items[start : start + 4096]
            rows = self._x[u]
            out[start : start + len(u)] = np.asarray(rows.multiply(self.weights_[:, i].T).sum(1)).ravel()
        return out

    def _fold_in(self, items, ratings):
        return np.asarray(items, dtype=np.int64)

    def _predict_folded(self, items_seen, items):
        return self.weights_[np.ix_(items_seen, items)].sum(0)

    def folds_items(self) -> bool:
        """Whether the fit kept ``P``'s diagonal (models saved by neucf 0.11 and earlier did not)."""
        return getattr(self, "diagonal_", None) is not None

    def _fold_in_item(self, users, ratings):
        """The item's column of weights, ``b = P X^T x = (I - B) (d * X^T x)`` (``x``: its
        users; ratings count as interactions, as in the fit)."""
        counts = np.asarray(self._x[np.unique(users)].sum(0), np.float64).ravel() * self.diagonal_
        return torch.from_numpy((counts - self.weights_ @ counts).astype(np.float32))

    def _fold_columns(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The folded items' columns of weights side by side (items x folds), kept until the
        folds change, and each item's column (-1: none); None without folds."""
        folds = self._item_folds()
        if folds is None:
            return None
        kept = getattr(self, "_kept_columns", None)
        if kept is None or kept[0] is not self.item_folds_ or len(kept[2]) != len(self.item_ids):
            kept = (self.item_folds_, torch.stack(folds[1], dim=1).numpy(), folds[0])
            self._kept_columns = kept
        return kept[1], kept[2]

    def _folded_item_scores(self, u, i):
        # every distinct user's row against every folded column, once
        columns = self._fold_columns()
        users, row = np.unique(u, return_inverse=True)
        return np.asarray(self._x[users] @ columns[0])[row, columns[1][i]]

    def _folded_user_item_scores(self, state, items, row):
        columns = self._fold_columns()
        return columns[0][state].sum(0)[columns[1][items]]

    def _state(self):
        diagonal = None if self.diagonal_ is None else torch.from_numpy(self.diagonal_)
        return {"weights": torch.from_numpy(self.weights_), "chosen": [self.l2_, self.dropout_], "diagonal": diagonal}

    def _restore(self, state, device):
        self.weights_ = state["weights"].numpy()
        self.l2_, self.dropout_ = state["chosen"]
        diagonal = state.get("diagonal")  # files of neucf 0.11 and earlier: none, so no item folds in
        self.diagonal_ = None if diagonal is None else diagonal.numpy()
        self._inputs = None
