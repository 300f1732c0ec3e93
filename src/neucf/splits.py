"""How ratings are divided: pure functions from index arrays and a seed to disjoint index arrays.

Every function returns :class:`Split` objects whose ``train``, ``valid`` and ``test`` are
sorted position arrays into the input; together they cover it exactly once (but for the
cold split, which leaves out the warm test ratings whose user or item it keeps out of train).

Examples:
    >>> import numpy as np
    >>> users = np.array([0, 0, 0, 1, 1, 1]); items = np.array([0, 1, 2, 0, 1, 2])
    >>> s = random_split(len(users), seed=0, fractions=(0.5, 0.0, 0.5))
    >>> sorted(np.concatenate([s.train, s.valid, s.test]).tolist())
    [0, 1, 2, 3, 4, 5]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import DataError, UsageError

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """Positions of the train, validation and test ratings (``valid`` may be empty).

    Examples:
        >>> Split(np.array([0, 1]), np.array([], dtype=np.int64), np.array([2])).sizes()
        {'train': 2, 'valid': 0, 'test': 1}
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Number of ratings in each part."""
        return {p: len(getattr(self, p)) for p in PARTS}

    @classmethod
    def from_parts(cls, part: np.ndarray) -> Split:
        """Build from an array giving each rating's part (0 train, 1 valid, 2 test; any other
        value: in no part)."""
        return cls(*(np.flatnonzero(part == k) for k in range(3)))


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if len(f) != 3 or (f < 0).any() or not np.isclose(f.sum(), 1.0) or f[0] <= 0:
        raise UsageError(
            f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1, train > 0"
        )
    return f


def _assign(n: int, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give each of n shuffled positions a part, in the exact proportions (rounded)."""
    bounds = np.round(np.cumsum(fractions) * n).astype(np.int64)
    part = np.searchsorted(bounds, np.arange(n), side="right").astype(np.int8)
    return part[rng.permutation(n)]


def random_split(n: int, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> Split:
    """Shuffle ``n`` ratings and cut them into train/valid/test by ``fractions``."""
    return Split.from_parts(_assign(n, _check_fractions(fractions), np.random.default_rng(seed)))


def held_out_mask(n: int, seed: int = 0, share: float = 0.05) -> np.ndarray:
    """Which of ``n`` training ratings a model holds out for itself when it is given no
    validation part: each independently with probability ``share``, under ``seed`` (the
    rating models' 5% for early stopping, the ranking models' 10% for their settings).

    Examples:
        >>> int(held_out_mask(1000, seed=0).sum())
        45
    """
    return np.random.default_rng(seed).random(n) < share


def kfold_split(n: int, k: int = 5, seed: int = 0) -> list[Split]:
    """``k`` shuffled folds; split ``f`` tests fold ``f`` and trains on the rest (no validation part).

    Examples:
        >>> [s.sizes()["test"] for s in kfold_split(10, k=3)]
        [4, 3, 3]
    """
    if not 2 <= k <= n:
        raise UsageError(f"k-fold needs 2 <= k <= number of ratings ({n}), got k={k}")
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return [Split.from_parts(np.where(fold == f, 2, 0)) for f in range(k)]


def movielens_split(users: np.ndarray, fold: int | str) -> Split:
    """The MovieLens 100k ready-made folds, made as the dataset's ``mku.sh`` makes them.

    ``fold`` 1..5 (u1..u5): rating rows ``(fold-1)*n/5 .. fold*n/5`` in file order are the
    test part (20,000 rows of u.data each). ``a`` / ``b`` (ua, ub): each user's 1st-10th
    (ua) or 11th-20th (ub) rating in file order is a test rating. No validation part.

    Examples:
        >>> movielens_split(np.zeros(10, dtype=int), 1).test.tolist()
        [0, 1]
    """
    n = len(users)
    key = str(fold).lower().removeprefix("u")
    if key in {"1", "2", "3", "4", "5"}:
        i = int(key)
        part = np.zeros(n, dtype=np.int8)
        part[(i - 1) * n // 5 : i * n // 5] = 2
        return Split.from_parts(part)
    if key in {"a", "b"}:
        order = np.argsort(users, kind="stable")
        sorted_users = users[order]
        starts = np.searchsorted(sorted_users, sorted_users, side="left")
        occurrence = np.empty(n, dtype=np.int64)
        occurrence[order] = np.arange(n) - starts + 1
        lo, hi = (1, 10) if key == "a" else (11, 20)
        return Split.from_parts(np.where((occurrence >= lo) & (occurrence <= hi), 2, 0))
    raise UsageError(f"MovieLens fold must be 1-5, a or b (u1..u5, ua, ub), not {fold!r}")


def temporal_split(users: np.ndarray, timestamps: np.ndarray | None, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> Split:
    """Per user, the latest ratings are held out: the last ``fractions[2]`` of each user's
    ratings (by time) go to test and the ``fractions[1]`` before them to validation.

    Counts per user are ``round(n * fraction)`` (half up); ties in time are broken at
    random under ``seed``.

    Examples:
        >>> temporal_split(np.zeros(10, dtype=int), np.arange(10)).test.tolist()
        [9]
    """
    if timestamps is None:
        raise DataError("the temporal split needs timestamps, and this data has none")
    f = _check_fractions(fractions)
    n = len(users)
    tiebreak = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tiebreak, timestamps, users))
    sorted_users = users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    count = np.searchsorted(sorted_users, sorted_users, side="right") - first
    rank_from_end = count - (np.arange(n) - first)  # 1 for a user's latest rating
    n_test = np.floor(count * f[2] + 0.5)
    n_valid = np.floor(count * f[1] + 0.5)
    part_sorted = np.where(rank_from_end <= n_test, 2, np.where(rank_from_end <= n_test + n_valid, 1, 0))
    part = np.empty(n, dtype=np.int8)
    part[order] = part_sorted
    return Split.from_parts(part)


def _per_user_order(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions sorted by user, then ``key``; for each sorted position its rank within its
    user (0 first) and its user's count."""
    order = np.lexsort((key, users))
    sorted_users = users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    count = np.searchsorted(sorted_users, sorted_users, side="right") - first
    return order, np.arange(len(users)) - first, count


def leave_last_out_split(users: np.ndarray, timestamps: np.ndarray | None) -> Split:
    """Each user's latest interaction is the test part and the one before it the validation
    part (for users with at least 3); the rest is train (the NCF paper's protocol). Ties in
    time go by file order: of two at the same second, the later line is the later one. A
    user with a single interaction keeps it in train (there is nothing to rank it from).

    Examples:
        >>> s = leave_last_out_split(np.array([0, 0, 0, 1, 1]), np.array([5, 9, 7, 1, 1]))
        >>> s.test.tolist(), s.valid.tolist(), s.train.tolist()
        ([1, 4], [2], [0, 3])
    """
    if timestamps is None:
        raise DataError("the leave-last-out split needs timestamps, and this data has none; use --split user-ratio")
    n = len(users)
    # by time, then by file order (np.lexsort sorts stably: equal times keep their file order)
    order, rank, count = _per_user_order(users, np.asarray(timestamps))
    from_end = count - rank  # 1 for a user's latest
    part_sorted = np.where((from_end == 1) & (count >= 2), 2, np.where((from_end == 2) & (count >= 3), 1, 0))
    part = np.empty(n, dtype=np.int8)
    part[order] = part_sorted
    return Split.from_parts(part)


def user_ratio_split(users: np.ndarray, seed: int = 0, share: float = 0.1) -> Split:
    """Each user's interactions in a seeded random order: the last ``int(share * n)`` are the
    test part, the ``int(share * n)`` before them the validation part, the rest train
    (RecBole's default 80/10/10 for top-N benchmarks).

    Examples:
        >>> s = user_ratio_split(np.repeat([0, 1], 10), seed=0)
        >>> s.sizes()
        {'train': 16, 'valid': 2, 'test': 2}
    """
    n = len(users)
    order, rank, count = _per_user_order(users, np.random.default_rng(seed).permutation(n))
    held = (share * count).astype(np.int64)
    part_sorted = np.where(rank >= count - held, 2, np.where(rank >= count - 2 * held, 1, 0))
    part = np.empty(n, dtype=np.int8)
    part[order] = part_sorted
    return Split.from_parts(part)


def cold_split(users: np.ndarray, items: np.ndarray, seed: int = 0, new_share: float = 0.2,
               train_share: float = 0.8) -> Split:  # fmt: skip
    """A cold-start split (after cmfrec's MovieLens side-information protocol): a seeded
    ``new_share`` of the users and then of the items are new, known only by their
    attributes; the ratings of old users on old items are shuffled and cut, ``train_share``
    to train (kept in file order) and the rest to test; every rating of a new user or on a
    new item is test. A warm test rating whose user or item has no training rating is
    dropped. ``users`` and ``items`` are dense indices that follow the sorted raw ids, so
    this draws exactly ``rng.permutation(sorted user ids)[:int(0.2 * n_users)]``, then the
    same of the items, then ``rng.permutation(len(warm))``, with one ``default_rng(seed)``.
    :func:`cold_kinds` says which test part each rating is in.

    Examples:
        >>> s = cold_split(np.repeat(np.arange(10), 10), np.tile(np.arange(10), 10))
        >>> s.sizes(), len(s.train) + len(s.test) <= 100
        ({'train': 51, 'valid': 0, 'test': 49}, True)
    """
    kinds = cold_kinds(users, items, seed, new_share, train_share)
    return Split.from_parts(np.select([kinds == -1, kinds >= 0], [0, 2], 3))


#: the test parts of the cold split, by the index :func:`cold_kinds` gives each rating
COLD_PARTS = ("warm", "new_items", "new_users", "both_new")


def cold_kinds(users: np.ndarray, items: np.ndarray, seed: int = 0, new_share: float = 0.2,
               train_share: float = 0.8) -> np.ndarray:  # fmt: skip
    """Each rating's part in :func:`cold_split` (same arguments, same draws): -1 train, -2
    dropped, else its test part as an index into :data:`COLD_PARTS` (old user and old item,
    old user and new item, new user and old item, both new).

    Examples:
        >>> kinds = cold_kinds(np.repeat(np.arange(10), 10), np.tile(np.arange(10), 10))
        >>> [int((kinds == k).sum()) for k in (-1, 0, 1, 2, 3)]
        [51, 13, 16, 16, 4]
    """
    users, items = np.asarray(users), np.asarray(items)
    rng = np.random.default_rng(seed)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    new_user = np.zeros(n_users, bool)
    new_user[rng.permutation(n_users)[: int(new_share * n_users)]] = True
    new_item = np.zeros(n_items, bool)
    new_item[rng.permutation(n_items)[: int(new_share * n_items)]] = True
    kinds = 2 * new_user[users].astype(np.int64) + new_item[items]
    warm = np.flatnonzero(kinds == 0)
    shuffled = warm[rng.permutation(len(warm))]
    cut = int(train_share * len(warm))
    kinds[shuffled[:cut]] = -1
    rest = shuffled[cut:]
    trained_users = np.bincount(users[shuffled[:cut]], minlength=n_users) > 0
    trained_items = np.bincount(items[shuffled[:cut]], minlength=n_items) > 0
    kinds[rest[~(trained_users[users[rest]] & trained_items[items[rest]])]] = -2
    return kinds


def coverage_split(users: np.ndarray, items: np.ndarray, seed: int = 0, fractions=(0.8, 0.0, 0.2)) -> Split:
    """The seed notebook's split, vectorized and without copies: every item and every user
    lands in train, validation and test.

    1. Each item's first three ratings (in an order shuffled under ``seed``) go to train,
       valid and test: every item is in all three parts. Items need >= 3 ratings.
    2. The rest is divided at random by ``fractions`` (the seed's 80/20 train/test).
    3. A user missing from a part gets one of their ratings MOVED there (never copied),
       picked so that the part it leaves keeps that item and that user.

    Examples:
        >>> import numpy as np
        >>> u = np.repeat(np.arange(3), 3); i = np.tile(np.arange(3), 3)
        >>> s = coverage_split(u, i, seed=0)
        >>> [sorted(set(u[p].tolist())) for p in (s.train, s.valid, s.test)]
        [[0, 1, 2], [0, 1, 2], [0, 1, 2]]
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    f = _check_fractions(fractions)
    n = len(users)
    rng = np.random.default_rng(seed)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    item_count = np.bincount(items, minlength=n_items)
    user_count = np.bincount(users, minlength=n_users)
    short_items = np.flatnonzero((item_count > 0) & (item_count < 3))
    if len(short_items):
        raise DataError(
            f"coverage split impossible: {len(short_items)} item(s) have fewer than 3 ratings "
            f"(item index {short_items[0]}); filter with --min-item-ratings 3"
        )
    short_users = np.flatnonzero((user_count > 0) & (user_count < 3))
    if len(short_users):
        raise DataError(
            f"coverage split impossible: {len(short_users)} user(s) have fewer than 3 ratings "
            f"(user index {short_users[0]}); filter with --min-user-ratings 3"
        )

    order = np.lexsort((rng.permutation(n), items))
    sorted_items = items[order]
    rank = np.arange(n) - np.searchsorted(sorted_items, sorted_items, side="left")
    part = np.full(n, -1, dtype=np.int8)
    head = order[rank < 3]
    part[head] = rank[rank < 3]
    rest = order[rank >= 3]
    part[rest] = _assign(len(rest), f, rng)

    for target in range(3):
        _fill_missing_users(part, users, items, target, n_users, n_items, rng)
    return Split.from_parts(part)


def _fill_missing_users(part, users, items, target, n_users, n_items, rng) -> None:
    """Move one rating of every user absent from part ``target`` into it, in place.

    Each round picks one random movable rating per missing user; when several picked
    ratings would leave the same (part, item), only as many as that part can spare move,
    and the next round retries the rest with fresh counts.
    """
    rated = np.bincount(users, minlength=n_users) > 0
    while True:
        user_in = np.stack([np.bincount(users[part == p], minlength=n_users) for p in range(3)])
        item_in = np.stack([np.bincount(items[part == p], minlength=n_items) for p in range(3)])
        missing = (user_in[target] == 0) & rated
        if not missing.any():
            return
        source = part.astype(np.int64)
        movable = missing[users] & (source != target) & (user_in[source, users] >= 2) & (item_in[source, items] >= 2)
        candidates = np.flatnonzero(movable)
        if len(candidates) == 0:
            _swap_in(part, users, items, target, np.flatnonzero(missing), user_in, rng)
            continue
        candidates = candidates[rng.permutation(len(candidates))]
        _, first = np.unique(users[candidates], return_index=True)
        chosen = candidates[first]
        group = source[chosen] * n_items + items[chosen]
        by_group = np.argsort(group, kind="stable")
        g_sorted = group[by_group]
        rank = np.arange(len(g_sorted)) - np.searchsorted(g_sorted, g_sorted, side="left")
        spare = item_in[source[chosen], items[chosen]][by_group] - 1
        part[chosen[by_group[rank < spare]]] = target


def _swap_in(part, users, items, target, missing_users, user_in, rng) -> None:
    """Fallback when no single move is allowed (every candidate item has one rating per part):
    exchange a missing user's rating (u, i) in another part with a rating (v, i) of the same
    item in ``target`` whose user v can spare it. Item counts per part do not change.

    Rare (tiny or saturated data), so a loop over the stuck users is fine.
    """
    for u in missing_users:
        own = np.flatnonzero((users == u) & (part != target))
        own = own[user_in[part[own], u] >= 2]
        for r in own[rng.permutation(len(own))]:
            partners = np.flatnonzero((items == items[r]) & (part == target))
            partners = partners[user_in[target, users[partners]] >= 2]
            if len(partners):
                s = partners[rng.integers(len(partners))]
                part[s], part[r] = part[r], target
                return
    raise DataError(
        f"coverage split impossible: user index {missing_users[0]} has no rating that can move into "
        f"{PARTS[target]} without emptying an item or the user elsewhere; filter with --min-user-ratings 3"
    )


def _kfold(users, items, timestamps, fold, seed):
    return kfold_split(len(users), k=5, seed=seed)[int(fold) - 1]


@dataclass(frozen=True)
class Splitter:
    """One way of dividing ratings, as ``train``, ``compare``, ``tune`` and the benchmarks use it:
    a number of folds, and fold ``k`` of a ratings table under a seed.

    Attributes:
        name: the ``--split`` name.
        divide: ``(users, items, timestamps, fold, seed) -> Split``, one of the pure functions above.
        folds: how many folds a comparison runs by default.
        fixed: True when fold ``k`` is one part of a fixed partition (k-fold, MovieLens
            u1..u5) and ``folds`` is its number of parts; False when the split is drawn at
            random, and fold ``k`` is the same split under ``seed + k - 1`` (any k >= 1).
        named_folds: extra fold names besides 1..folds (MovieLens' ``a`` and ``b``).
        min_item_ratings: the item filter this split needs unless told otherwise (coverage: 3).

    Examples:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays(np.arange(10), np.zeros(10, int), np.ones(10))
        >>> SPLITTERS["random"].split(r, fold=1, seed=0).sizes()
        {'train': 8, 'valid': 1, 'test': 1}
    """

    name: str
    divide: Callable
    folds: int = 5
    fixed: bool = False
    named_folds: tuple[str, ...] = ()
    min_item_ratings: int = 0

    def check_fold(self, fold: int | str | None) -> int | str:
        """The fold as the split takes it (default 1); a :class:`UsageError` names the choices."""
        if fold is None:
            return 1
        text = str(fold).strip().lower()
        if text in self.named_folds:
            return text
        try:
            number = int(text.removeprefix("u") if self.named_folds else text)
        except ValueError:
            number = 0
        if number >= 1 and (not self.fixed or number <= self.folds):
            return number
        choices = f"1..{self.folds}" if self.fixed else "a number >= 1 (fold k uses seed + k - 1)"
        if self.named_folds:
            choices += ", " + ", ".join(self.named_folds)
        raise UsageError(f"--fold {fold!r} is not a fold of the {self.name} split; choose {choices}")

    def split(self, ratings, fold: int | str | None = None, seed: int = 0) -> Split:
        """Fold ``fold`` (default 1) of ``ratings`` under ``seed``."""
        fold = self.check_fold(fold)
        if not self.fixed:
            seed = seed + int(fold) - 1
        parts = self.divide(ratings.users, ratings.items, ratings.timestamps, fold, seed)
        if len(parts.train) == 0 or len(parts.test) == 0:
            sizes = ", ".join(f"{k} {v:,}" for k, v in parts.sizes().items())
            raise DataError(
                f"the {self.name} split of {len(ratings):,} ratings leaves {sizes}; a split needs at least one "
                "training and one test rating: use more data or another split"
            )
        return parts

    def fold_list(self, folds: list | None = None) -> list:
        """The folds a comparison runs: ``folds`` when given (each checked), else 1..``self.folds``."""
        return [self.check_fold(f) for f in folds] if folds else list(range(1, self.folds + 1))


#: every split by its ``--split`` name; a new split is one entry here
SPLITTERS: dict[str, Splitter] = {
    s.name: s
    for s in (
        Splitter("coverage", lambda u, i, t, fold, seed: coverage_split(u, i, seed=seed), min_item_ratings=3),
        Splitter("random", lambda u, i, t, fold, seed: random_split(len(u), seed=seed)),
        Splitter("kfold", _kfold, fixed=True),
        Splitter("movielens", lambda u, i, t, fold, seed: movielens_split(u, fold), fixed=True, named_folds=("a", "b")),
        Splitter("temporal", lambda u, i, t, fold, seed: temporal_split(u, t, seed=seed)),
        Splitter("leave-last-out", lambda u, i, t, fold, seed: leave_last_out_split(u, t), folds=1, fixed=True),
        Splitter("user-ratio", lambda u, i, t, fold, seed: user_ratio_split(u, seed=seed)),
        Splitter("cold", lambda u, i, t, fold, seed: cold_split(u, i, seed=seed)),
    )
}


def get_splitter(name: str) -> Splitter:
    """The split registered as ``name``; a :class:`UsageError` lists the choices.

    Examples:
        >>> get_splitter("movielens").fixed
        True
    """
    try:
        return SPLITTERS[name]
    except KeyError:
        raise UsageError(f"unknown split {name!r}; choose one of {', '.join(SPLITTERS)}") from None
