"""The bias baseline ``mean + b_u + b_i`` that every rating model contains: its alternating
least-squares fit and its shrinkage, estimated from the data (empirical Bayes).

Examples:
    >>> from neucf.datasets import Ratings
    >>> fit = BiasFit.of(Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0]))
    >>> round(fit.mean, 3), fit.user_bias.shape
    (4.0, (2,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..datasets import Ratings


def bias_regularisation(train: Ratings, n_rounds: int = 5) -> tuple[float, float]:
    """``(reg_user, reg_item)`` for :func:`fit_biases`, estimated from the data (empirical Bayes).

    With biases drawn from N(0, tau^2) and ratings noisy by sigma^2 around
    ``mean + b_u + b_i``, the posterior-mean bias is the least-squares one with shrinkage
    ``reg = sigma^2 / tau^2``. Both variances come from the data by the method of moments:
    sigma^2 is the residual variance after the biases, and tau^2 the variance of the raw
    per-user (per-item) residual means less their sampling variance sigma^2 / n. The two
    are refined together over ``n_rounds`` fits. This replaces a fixed constant (Surprise's
    15 and 10), which over-shrinks biases on sparse data ("Why the defaults" in the documentation).

    Examples:
        >>> from neucf.datasets.synthetic import SyntheticSpec, generate_ratings
        >>> reg_user, reg_item = bias_regularisation(generate_ratings(SyntheticSpec(n_ratings=5000), seed=0))
        >>> 0 < reg_user < 10 and 0 < reg_item < 10
        True
    """
    return _bias_regularisation(train, _BiasSolver(train), n_rounds)


def _bias_regularisation(train: Ratings, solver: _BiasSolver, n_rounds: int) -> tuple[float, float]:
    """:func:`bias_regularisation` with ``train``'s solver already built (:meth:`BiasFit.of` reuses it)."""
    residual, n_u, n_i = solver.residual, solver.n_u, solver.n_i

    def prior_variance(index, counts, others, sigma2):
        sums = np.bincount(index, residual - others, len(counts))
        seen = counts > 0
        return max(float(np.mean((sums[seen] / counts[seen]) ** 2 - sigma2 / counts[seen])), 1e-6)

    reg_user = reg_item = 10.0
    for _ in range(n_rounds):
        _, bu, bi = solver.solve(reg_user, reg_item)
        sigma2 = max(float(np.var(residual - bu[train.users] - bi[train.items])), 1e-12)
        reg_user = sigma2 / prior_variance(train.users, n_u, bi[train.items], sigma2)
        reg_item = sigma2 / prior_variance(train.items, n_i, bu[train.users], sigma2)
    return reg_user, reg_item


def fit_biases(train: Ratings, reg_user: float | None = None, reg_item: float | None = None, n_iter: int = 10):
    """Regularised user and item biases by alternating least squares (Surprise's baseline).

    Minimises ``sum (r - mean - b_u - b_i)^2 + reg_user * sum b_u^2 + reg_item * sum b_i^2``;
    a shrinkage left as None is estimated by :func:`bias_regularisation`.
    Returns ``(mean, user_bias, item_bias)``; users/items without ratings get bias 0.

    Examples:
        >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
        >>> mean, bu, bi = fit_biases(r, 0.0, 0.0)
        >>> round(mean, 3)
        4.0
    """
    if reg_user is None or reg_item is None:
        fit = BiasFit.of(train, reg_user, reg_item, n_iter)
        return fit.mean, fit.user_bias, fit.item_bias
    return _BiasSolver(train).solve(reg_user, reg_item, n_iter)


class _BiasSolver:
    """:func:`fit_biases`' alternating least squares on one training set, for the several
    solves that estimating the shrinkage makes. Each step's sums over a user's (item's)
    ratings of ``r - mean - b_i`` (``b_u``) are the fixed sums of ``r - mean`` less one
    product with the 0/1 rating pattern: 2 sparse products a step instead of 2 gathers, 2
    subtractions and 2 weighted counts over every rating, and the pattern is built once
    (on 4M ratings, 0.28 s of a 0.43 s solve)."""

    def __init__(self, train: Ratings):
        self.mean = float(train.ratings.astype(np.float64).mean())
        self.residual = residual = train.ratings.astype(np.float64) - self.mean
        self.n_u = np.bincount(train.users, minlength=train.n_users)
        self.n_i = np.bincount(train.items, minlength=train.n_items)
        shape = (train.n_users, train.n_items)
        self.pattern = sp.csr_matrix((np.ones(len(train)), (train.users, train.items)), shape=shape)
        self.pattern_t = self.pattern.T.tocsr()
        self.sum_u = np.bincount(train.users, residual, train.n_users)
        self.sum_i = np.bincount(train.items, residual, train.n_items)

    def solve(self, reg_user: float, reg_item: float, n_iter: int = 10) -> tuple[float, np.ndarray, np.ndarray]:
        """``(mean, user_bias, item_bias)`` for the given shrinkage."""
        bu = np.zeros(len(self.n_u))
        bi = np.zeros(len(self.n_i))
        for _ in range(n_iter):
            bi = (self.sum_i - self.pattern_t @ bu) / (self.n_i + reg_item + 1e-12)
            bu = (self.sum_u - self.pattern @ bi) / (self.n_u + reg_user + 1e-12)
        return self.mean, bu, bi


@dataclass(frozen=True)
class BiasFit:
    """The data's bias baseline, ``mean + b_u + b_i``, with the shrinkage it was fitted with.

    Examples:
        >>> from neucf.datasets import Ratings
        >>> BiasFit.of(Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])).mean
        4.0
    """

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    reg_user: float
    reg_item: float

    @classmethod
    def of(cls, train, reg_user: float | None = None, reg_item: float | None = None, n_iter: int = 10) -> BiasFit:
        """The fit on ``train``; a shrinkage left None is estimated (:func:`bias_regularisation`)."""
        solver = _BiasSolver(train)
        if reg_user is None or reg_item is None:
            estimated = _bias_regularisation(train, solver, n_rounds=5)
            reg_user = estimated[0] if reg_user is None else reg_user
            reg_item = estimated[1] if reg_item is None else reg_item
        return cls(*solver.solve(reg_user, reg_item, n_iter), reg_user, reg_item)

    def residuals(self, train) -> np.ndarray:
        """``r - mean - b_u - b_i`` of each training rating."""
        return train.ratings - (self.mean + self.user_bias[train.users] + self.item_bias[train.items])
