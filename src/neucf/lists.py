"""Top-N lists over any scorer: a known user's, a new user's (fold-in), every user's at once.

A list ranks the candidate items of a user by the model's scores (its predicted ratings for a
rating model, its ranking scores for a ranking model; ``pop`` ranks by popularity, see
:meth:`~neucf.models.Recommender._rank`), best first, ties to the smaller item index.
Candidates are the items with training data that the user has not seen: their training
items, the items of ``exclude`` (a validation part) and those of a history they brought.

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> model = Biases().fit(Ratings.from_arrays([1, 1, 2, 2], [1, 2, 2, 3], [5.0, 3.0, 4.0, 2.0]))
    >>> recommend_all(model, k=1)[["user", "item", "rank"]].values.tolist()
    [[1, 3, 1], [2, 1, 1]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .datasets import Ratings
from .datasets.ratings import id_text, lookup_ids, show_id
from .errors import DataError, UsageError


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first, ties to the smaller position (a
    stable sort of what a partition keeps, not of everything).

    Examples:
        >>> top_k(np.array([1.0, 3.0, 2.0, 3.0]), 3).tolist()
        [1, 3, 2]
    """
    scores = np.asarray(scores)
    pool = np.arange(len(scores))
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        pool = np.flatnonzero(scores >= kth)
    return pool[np.argsort(-scores[pool], kind="stable")][:k]


def _check_k(k: int) -> None:
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")


def best(model, scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``items`` by the model's ranking of their ``scores``: (items, scores)."""
    top = top_k(model._rank(scores, items), k)
    return items[top], scores[top]


def recommend(model, user=None, k: int = 10, exclude_seen: bool = True, history=None) -> pd.DataFrame:
    """The top ``k`` items for a raw user id, best first: columns item, prediction (and title).

    ``history`` folds the user in from their history (a dict raw item -> rating, a list of
    raw items, or a DataFrame user, item[, rating]): a user the model never saw (``user``
    may then be None) or a known user with more. Seen items (training and history) are
    excluded unless ``exclude_seen`` is False.
    """
    model._check_fitted()
    _check_k(k)
    if history is not None:
        from .models.base import _history_frame

        candidates = np.flatnonzero(model.known_items)
        rows = model._history_rows(_history_frame(history, user))
        key = id_text(user) if user is not None else next(iter(rows), None)
        items, ratings = rows.get(key, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        known = model._known_user(user)
        row = model._merged_row(known, items, ratings)
        if exclude_seen:
            candidates = model._unseen(row[0] if known is None else np.union1d(row[0], model._rated_by(known)))
        chosen, scores = best(model, model._folded_scores(row, candidates, user), candidates, k)
    else:
        chosen, scores = recommend_index(model, int(lookup_ids(model.user_ids, [user], "user")[0]), k, exclude_seen)
    frame = pd.DataFrame({"item": model.item_ids[chosen], "prediction": scores})
    if model.item_titles is not None:
        frame["title"] = model.item_titles[chosen]
    return frame


def recommend_index(model, u: int, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`recommend` for the known user of dense index ``u``, as arrays: the top ``k``
    item indices, best first, and their scores (what a server needs, without tables)."""
    model._check_fitted()
    _check_k(k)
    if not 0 <= u < len(model.user_ids) or not model.known_users[u]:
        shown = show_id(model.user_ids[u]) if 0 <= u < len(model.user_ids) else f"index {u}"
        raise DataError(f"user {shown} has no training rating, so there is nothing to personalise")
    seen = model._rated_by(u)
    candidates = model._unseen(seen) if exclude_seen else np.flatnonzero(model.known_items)
    scores = model._score_user(u, candidates, unseen=exclude_seen or not np.isin(candidates, seen).any())
    return best(model, scores, candidates, k)


def recommend_row(model, items, ratings, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` for a new user given as a row (known item indices and their ratings, NaN
    where an interaction has none), folded in, the row's items excluded: item indices, best
    first, and their scores (the index-level :func:`recommend` with a history)."""
    _check_k(k)
    row = model._checked_row(items, ratings)
    candidates = model._unseen(row[0])
    return best(model, model._folded_scores(row, candidates, None), candidates, k)


def seen_pairs(model, exclude: Ratings | None) -> tuple[np.ndarray, np.ndarray]:
    """The (user, item) index pairs no list may hold: the training ones and those of
    ``exclude`` (raw ids matched as text; pairs of ids the model does not know dropped)."""
    users, items = model.train_[0].astype(np.int64), model.train_[1].astype(np.int64)
    if exclude is not None and len(exclude):
        u = lookup_ids(model.user_ids, exclude.user_ids[exclude.users], "user", missing_ok=True)
        i = lookup_ids(model.item_ids, exclude.item_ids[exclude.items], "item", missing_ok=True)
        ok = (u >= 0) & (i >= 0)
        users, items = np.concatenate([users, u[ok]]), np.concatenate([items, i[ok]])
    return users, items


def recommend_all(model, k: int = 10, exclude: Ratings | None = None, batch_users: int = 256) -> pd.DataFrame:
    """Every known user's top ``k`` in one vectorised pass: columns user, item, rank (1 =
    best), prediction (the score). Candidates are the items with training data that the user
    did not see in training nor in ``exclude`` (e.g. the validation part)."""
    model._check_fitted()
    _check_k(k)
    seen_users, seen_items = seen_pairs(model, exclude)
    users = np.flatnonzero(model.known_users)
    candidates = np.flatnonzero(model.known_items)
    column = np.full(len(model.item_ids), -1)
    column[candidates] = np.arange(len(candidates))
    frames = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        predictions = model._score_users(batch, candidates)
        scores = np.array(model._rank(predictions, candidates), dtype=np.float64)
        position = np.full(len(model.user_ids), -1)
        position[batch] = np.arange(len(batch))
        mine = (position[seen_users] >= 0) & (column[seen_items] >= 0)
        scores[position[seen_users[mine]], column[seen_items[mine]]] = -np.inf
        order = top_rows(scores, k)
        valid = np.isfinite(np.take_along_axis(scores, order, axis=1))
        picked = np.take_along_axis(predictions, order, axis=1)
        rows, ranks = np.nonzero(valid)
        frames.append(pd.DataFrame({
            "user": model.user_ids[batch[rows]],
            "item": model.item_ids[candidates[order[valid]]],
            "rank": ranks + 1,
            "prediction": picked[valid].astype(np.float32),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` highest columns (all of them where a row has fewer), highest first,
    ties to the smaller column: a partition, then a stable sort of what it keeps.

    Examples:
        >>> top_rows(np.array([[1.0, 3.0, 2.0, 3.0]]), 2).tolist()
        [[1, 3]]
    """
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    # every column scoring at least the k-th best, ties included, in column order
    keep = scores >= kth
    width = int(keep.sum(1).max())
    pool = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    values = np.take_along_axis(scores, pool, axis=1)
    values[~np.take_along_axis(keep, pool, axis=1)] = -np.inf
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(pool, order, axis=1)
