"""Top-N lists over any scorer: a known user's, a new user's (fold-in), every user's at once.

A list ranks the candidate items of a user by the model's scores (its predicted ratings for a
rating model, its ranking scores for a ranking model; ``pop`` ranks by popularity, see
:meth:`~neucf.models.Recommender._rank`), best first, ties to the smaller item index.
Candidates are the items with training data, and those a model that reads attributes scores
from theirs (:meth:`~neucf.models.Recommender.listable`), that the user has not seen: their
training items, the items of ``exclude`` (a validation part) and those of a history they brought.

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> model = Biases().fit(Ratings.from_arrays([1, 1, 2, 2], [1, 2, 2, 3], [5.0, 3.0, 4.0, 2.0]))
    >>> recommend_all(model, k=1)[["user", "item", "rank"]].values.tolist()
    [[1, 3, 1], [2, 1, 1]]
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .datasets import Ratings
from .datasets.ratings import id_text, lookup_ids, show_id
from .errors import DataError, UsageError

log = logging.getLogger(__name__)


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


def candidate_mask(model, candidates) -> np.ndarray | None:
    """The items a list may hold, narrowed to ``candidates`` (raw ids; None: no narrowing);
    ids the model cannot list are ignored, and counted in the log.

    Examples:
        >>> from neucf.datasets import Ratings
        >>> from neucf.models import Biases
        >>> model = Biases().fit(Ratings.from_arrays([1, 1], [1, 2], [5.0, 3.0]))
        >>> candidate_mask(model, [2, 99]).tolist()
        [False, True]
    """
    if candidates is None:
        return None
    index = lookup_ids(model.item_ids, np.asarray(list(candidates), dtype=object), "item", missing_ok=True)
    mask = np.zeros(len(model.item_ids), bool)
    listable = model.listable()
    usable = (index >= 0) & listable[np.maximum(index, 0)]
    mask[index[usable]] = True
    if not usable.all():
        log.info("candidates: ignored %d item(s) the model cannot list", int((~usable).sum()))
    return mask


def recommend(
    model, user=None, k: int = 10, exclude_seen: bool = True, history=None, user_attributes: dict | None = None,
    candidates=None,
) -> pd.DataFrame:  # fmt: skip
    """The top ``k`` items for a raw user id, best first: columns item, prediction (and title).

    ``history`` folds the user in from their history (a dict raw item -> rating, a list of
    raw items, or a DataFrame user, item[, rating]): a user the model never saw (``user``
    may then be None) or a known user with more. ``user_attributes`` (a dict column ->
    value, e.g. ``{"age": "25", "gender": "F"}``) describes a user the model never saw, for
    a model that scores users from attributes. Seen items (training and history) are
    excluded unless ``exclude_seen`` is False. ``candidates`` (raw ids) narrows the list to
    those items, e.g. this week's arrivals (:func:`candidate_mask`).
    """
    model._check_fitted()
    _check_k(k)
    allowed = candidate_mask(model, candidates)
    if user_attributes is not None:
        if history is not None:
            raise UsageError("give a new user's history or their attributes, not both")
        chosen, scores = recommend_attributes(model, user_attributes, k, allowed)
    elif history is not None:
        from .models.base import _history_frame

        pool = np.flatnonzero(model.listable())
        rows = model._history_rows(_history_frame(history, user))
        key = id_text(user) if user is not None else next(iter(rows), None)
        items, ratings = rows.get(key, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        known = model._known_user(user)
        row = model._merged_row(known, items, ratings)
        if exclude_seen:
            pool = model._unseen(row[0] if known is None else np.union1d(row[0], model._rated_by(known)))
        pool = _narrow(pool, allowed)
        chosen, scores = best(model, model._folded_scores(row, pool, user), pool, k)
    else:
        u = int(lookup_ids(model.user_ids, [user], "user")[0])
        chosen, scores = recommend_index(model, u, k, exclude_seen, allowed)
    frame = pd.DataFrame({"item": model.item_ids[chosen], "prediction": scores})
    if model.item_titles is not None:
        frame["title"] = model.item_titles[chosen]
    return frame


def _narrow(items: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    return items if allowed is None else items[allowed[items]]


def recommend_index(
    model, u: int, k: int = 10, exclude_seen: bool = True, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`recommend` for the known user of dense index ``u`` (known by training data or
    by attributes), as arrays: the top ``k`` item indices, best first, and their scores
    (what a server needs, without tables); ``allowed``: a mask of the items it may list."""
    model._check_fitted()
    _check_k(k)
    in_map = 0 <= u < len(model.user_ids)
    if not in_map or not model.scorable("user")[u]:
        shown = show_id(model.user_ids[u]) if in_map else f"index {u}"
        raise DataError(f"user {shown} has no training rating, so there is nothing to personalise")
    seen = model._rated_by(u)
    candidates = _narrow(model._unseen(seen) if exclude_seen else np.flatnonzero(model.listable()), allowed)
    scores = model._user_scores(u, candidates, unseen=exclude_seen or not np.isin(candidates, seen).any())
    return best(model, scores, candidates, k)


def new_user_scores(model, attributes: dict, items: np.ndarray) -> np.ndarray:
    """Scores of ``items`` (indices) for a user the model never saw, known by ``attributes``
    (a dict column -> value, encoded as the training users' were), clipped to the scale."""
    from .attributes import Attributes

    if "user" not in model.attribute_sides():
        raise UsageError(
            f"this {model.name} model scores no user from attributes: fit a model that reads them "
            "(neucf models says which) on data with user attributes"
        )
    encoder = model.catalogue_.maps["user"]
    columns = [name for name, _, _ in encoder.columns]
    unknown = sorted(set(attributes) - set(columns))
    if unknown:
        raise UsageError(f"user attributes: {unknown[0]!r} is not one the model knows; it knows {', '.join(columns)}")
    table = pd.DataFrame({c: ["" if attributes.get(c) is None else str(attributes[c]).strip()] for c in columns})
    row = Attributes(np.array(["new"], dtype=object), table, {name: kind for name, kind, _ in encoder.columns})
    scores = model._new_user_scores(encoder.transform(row, ["new"]).toarray(), items)
    return np.clip(scores, *model.scale) if model.task == "rating" else scores


def recommend_row(
    model, items, ratings, k: int = 10, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` for a new user given as a row (known item indices and their ratings, NaN
    where an interaction has none), folded in, the row's items excluded: item indices, best
    first, and their scores (the index-level :func:`recommend` with a history); ``allowed``:
    a mask of the items it may list."""
    _check_k(k)
    row = model._checked_row(items, ratings)
    candidates = _narrow(model._unseen(row[0]), allowed)
    return best(model, model._folded_scores(row, candidates, None), candidates, k)


def recommend_attributes(
    model, attributes: dict, k: int = 10, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` for a new user known only by ``attributes`` (a dict column -> value), as
    arrays: item indices, best first, and their scores; ``allowed``: a mask of the items it may list."""
    _check_k(k)
    pool = _narrow(np.flatnonzero(model.listable()), allowed)
    return best(model, new_user_scores(model, attributes, pool), pool, k)


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


def recommend_all(
    model, k: int = 10, exclude: Ratings | None = None, batch_users: int = 256, candidates=None
) -> pd.DataFrame:
    """Every known user's top ``k`` in one vectorised pass: columns user, item, rank (1 =
    best), prediction (the score). Candidates are the items a list may hold that the user
    did not see in training nor in ``exclude`` (e.g. the validation part), narrowed to
    ``candidates`` (raw ids) when given."""
    model._check_fitted()
    _check_k(k)
    seen_users, seen_items = seen_pairs(model, exclude)
    users = np.flatnonzero(model.known_users)
    allowed = candidate_mask(model, candidates)  # a narrowing of what the model can list
    candidates = np.flatnonzero(model.listable() if allowed is None else allowed)
    if not len(candidates):
        raise DataError("no candidate item is one the model can list")
    column = np.full(len(model.item_ids), -1)
    column[candidates] = np.arange(len(candidates))
    frames = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        predictions = model._users_scores(batch, candidates)
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
