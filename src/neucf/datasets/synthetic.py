"""Generated ratings with known structure, for benchmarks and property tests.

A rating is ``mean + b_u + b_i + p_u . q_i + noise``, then clipped to the scale and rounded
to its step (half stars, whole stars, or left continuous). Who rates what follows skewed
activity and popularity, as in real data: user activity is lognormal and item popularity
Zipf-like, so a few items are in most users' rows and most items have few ratings.

With ``rank=0`` the data hold biases only: no model can beat ``mean + b_u + b_i`` except by
noise, which makes them the test that a model contains a good bias baseline. With
``rank > 0`` there is an interaction to learn.

Examples:
    >>> r = generate_ratings(SyntheticSpec(n_users=50, n_items=40, n_ratings=500, rank=2), seed=0)
    >>> (len(r), r.scale)
    (500, (0.5, 4.0))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UsageError
from .ratings import Ratings


@dataclass(frozen=True)
class SyntheticSpec:
    """What :func:`generate_ratings` draws.

    Attributes:
        n_users, n_items, n_ratings: sizes (distinct (user, item) pairs).
        rank: dimensions of the interaction ``p_u . q_i`` (0: biases only).
        mean, user_std, item_std: the global mean and the spreads of ``b_u`` and ``b_i``.
        factor_std: spread of the interaction term ``p_u . q_i`` as a whole.
        noise_std: spread of the Gaussian noise.
        scale: ``(low, high)``; values are clipped into it.
        step: rounding step (0.5: half stars, 1: whole stars, 0: continuous).
        activity_sigma: sigma of the lognormal user activity (0: uniform).
        popularity: Zipf exponent of item popularity (0: uniform).

    Examples:
        >>> SyntheticSpec().scale
        (0.5, 4.0)
    """

    n_users: int = 1500
    n_items: int = 2000
    n_ratings: int = 40_000
    rank: int = 0
    mean: float = 3.0
    user_std: float = 0.5
    item_std: float = 0.4
    factor_std: float = 0.0
    noise_std: float = 0.6
    scale: tuple[float, float] = (0.5, 4.0)
    step: float = 0.5
    activity_sigma: float = 1.0
    popularity: float = 1.1

    def __post_init__(self):
        if min(self.n_users, self.n_items, self.n_ratings) < 1:
            raise UsageError("n_users, n_items and n_ratings must be >= 1")
        if self.n_ratings > self.n_users * self.n_items:
            raise UsageError(f"{self.n_ratings} ratings do not fit in {self.n_users} x {self.n_items} pairs")
        if self.rank < 0 or self.step < 0 or not self.scale[0] < self.scale[1]:
            raise UsageError("rank and step must be >= 0 and the scale must be (low, high) with low < high")


#: The generated datasets of the quality benchmark, by name.
PRESETS: dict[str, SyntheticSpec] = {
    # the bias-only set: half stars 0.5..4, skewed activity and popularity
    "bias-only": SyntheticSpec(),
    # a rank-5 interaction on top of the same kind of biases, dense enough to be learnt
    # (60 ratings a user on average; at the bias-only set's density of ~21 a user, even
    # Surprise's tuned SVD does not beat the bias baseline)
    "low-rank": SyntheticSpec(n_users=1000, n_items=600, n_ratings=60_000, rank=5, factor_std=0.8, noise_std=0.5),
    # dense, continuous -10..10, few items (the "dense" shape)
    "dense-continuous": SyntheticSpec(
        n_users=5000,
        n_items=100,
        n_ratings=200_000,
        rank=4,
        mean=0.0,
        user_std=2.0,
        item_std=1.5,
        factor_std=2.5,
        noise_std=3.0,
        scale=(-10.0, 10.0),
        step=0.0,
        activity_sigma=0.5,
        popularity=0.5,
    ),
    # most items rated 1-3 times (8,000 items, 60k ratings, steep popularity), whole stars
    # 1..5: the sparse shape where item factors have next to nothing to learn from
    "long-tail": SyntheticSpec(
        n_users=3000,
        n_items=8000,
        n_ratings=60_000,
        rank=4,
        mean=3.6,
        factor_std=0.6,
        noise_std=0.8,
        scale=(1.0, 5.0),
        step=1.0,
        popularity=1.3,
    ),
    # few items, each user's row dense (40 items, 3,000 users rating ~30 of them), whole stars
    "few-items": SyntheticSpec(
        n_users=3000,
        n_items=40,
        n_ratings=90_000,
        rank=3,
        mean=3.4,
        factor_std=0.7,
        noise_std=0.7,
        scale=(1.0, 5.0),
        step=1.0,
        activity_sigma=0.3,
        popularity=0.3,
    ),
    # half stars 0.5..4 with a rank-3 interaction at ~30 ratings a user
    "half-star": SyntheticSpec(n_users=2500, n_items=1500, n_ratings=75_000, rank=3, factor_std=0.6, noise_std=0.6),
}


def _weights(n: int, rng: np.random.Generator, sigma: float = 0.0, zipf: float = 0.0) -> np.ndarray:
    w = rng.lognormal(0.0, sigma, n) if sigma > 0 else np.ones(n)
    if zipf > 0:
        w = w * rng.permutation(np.arange(1, n + 1, dtype=np.float64) ** -zipf)
    return w / w.sum()


def _pairs(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs drawn by activity x popularity; every user and item has one."""
    pu = _weights(spec.n_users, rng, sigma=spec.activity_sigma)
    pi = _weights(spec.n_items, rng, zipf=spec.popularity)
    n_u, n_i, n = spec.n_users, spec.n_items, spec.n_ratings
    # one rating per user and per item first, so that no index is empty
    seed_users = np.concatenate([np.arange(n_u), rng.choice(n_u, n_i, p=pu)])
    seed_items = np.concatenate([rng.choice(n_i, n_u, p=pi), rng.permutation(n_i)])
    keys = np.unique(seed_users.astype(np.int64) * n_i + seed_items)[:n]
    taken = pd.Index(keys)  # a hash set: rounds cost O(draw), not a sort of everything taken

    def new_keys(candidates: np.ndarray) -> np.ndarray:
        unique = pd.unique(candidates)
        return np.sort(unique[~pd.Index(unique).isin(taken)])

    while len(taken) < n:
        draw = int((n - len(taken)) * 1.3) + 16
        fresh = new_keys(rng.choice(n_u, draw, p=pu).astype(np.int64) * n_i + rng.choice(n_i, draw, p=pi))
        if len(fresh) < draw // 100:  # the popular pairs are (nearly) exhausted: fill uniformly
            fresh = new_keys(rng.integers(0, n_u * n_i, draw))
        taken = taken.append(pd.Index(rng.permutation(fresh)[: n - len(taken)]))
    keys = rng.permutation(np.sort(taken.to_numpy()))
    return keys // n_i, keys % n_i


def generate_ratings(spec: SyntheticSpec = SyntheticSpec(), seed: int = 0) -> Ratings:
    """Ratings drawn from ``spec`` under ``seed`` (same seed, same ratings); ids are 1-based.

    Examples:
        >>> a = generate_ratings(PRESETS["bias-only"], seed=3)
        >>> b = generate_ratings(PRESETS["bias-only"], seed=3)
        >>> bool((a.ratings == b.ratings).all())
        True
    """
    rng = np.random.default_rng(seed)
    users, items = _pairs(spec, rng)
    b_u = rng.normal(0.0, spec.user_std, spec.n_users)
    b_i = rng.normal(0.0, spec.item_std, spec.n_items)
    value = spec.mean + b_u[users] + b_i[items]
    if spec.rank:
        # each factor entry has std s / rank**0.25, so p . q has std s
        std = spec.factor_std / spec.rank**0.25
        p = rng.normal(0.0, std, (spec.n_users, spec.rank))
        q = rng.normal(0.0, std, (spec.n_items, spec.rank))
        value = value + np.einsum("nk,nk->n", p[users], q[items])
    value = value + rng.normal(0.0, spec.noise_std, len(users))
    low, high = spec.scale
    if spec.step:
        value = low + np.round((value - low) / spec.step) * spec.step
    value = np.clip(value, low, high)
    return Ratings.from_arrays(users + 1, items + 1, value.astype(np.float32), scale=spec.scale)


def taste_group_frame(
    n_users: int = 200_000, n_items: int = 100_000, mean: float = 25.0, seed: int = 0, groups: int = 400
) -> pd.DataFrame:
    """Interactions with a planted structure, for benchmarks at any catalogue size: users and
    items belong to ``groups`` taste groups; each user's interactions (lognormal in number,
    ``mean`` on average, at least 5) come 70% from their group's items and 30% from the whole
    catalogue, both with Zipf-like popularity. Columns ``user, item, timestamp`` (0-based ids;
    timestamps increase per user), row for row those of ``../shared/tools/synth_implicit.py``
    for the same arguments.

    Examples:
        >>> f = taste_group_frame(50, 400, 6, seed=1, groups=20)
        >>> list(f.columns), bool(f.groupby("user").size().min() >= 1)
        (['user', 'item', 'timestamp'], True)
    """
    rng = np.random.default_rng(seed)
    item_group = rng.integers(0, groups, n_items)
    if np.bincount(item_group, minlength=groups).min() == 0:
        raise UsageError(f"{n_items:,} items leave some of the {groups} taste groups empty; give more items")
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)]
    order = np.argsort(item_group, kind="stable")
    bounds = np.searchsorted(item_group[order], np.arange(groups + 1))
    group_cdf = []
    for g in range(groups):
        members = order[bounds[g] : bounds[g + 1]]
        group_cdf.append((members, np.cumsum(pop[members] / pop[members].sum())))
    global_cdf = np.cumsum(pop / pop.sum())
    counts = np.maximum(5, rng.lognormal(np.log(mean) - 0.5, 1.0, n_users).astype(int))
    user_group = rng.integers(0, groups, n_users)
    users, items = [], []
    # one user at a time, as the reference script draws: the same seed gives the same rows
    for u in range(n_users):
        c = counts[u]
        k_in = rng.binomial(c, 0.7)
        members, cdf = group_cdf[user_group[u]]
        a = members[np.minimum(np.searchsorted(cdf, rng.random(k_in)), len(members) - 1)]
        b = np.minimum(np.searchsorted(global_cdf, rng.random(c - k_in)), n_items - 1)
        its = np.unique(np.concatenate([a, b]))
        users.append(np.full(len(its), u, dtype=np.int64))
        items.append(rng.permutation(its))
    users, items = np.concatenate(users), np.concatenate(items)
    return pd.DataFrame({"user": users, "item": items, "timestamp": 1_600_000_000 + np.arange(len(users))})
