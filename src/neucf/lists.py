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
from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

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

        rows = model._history_rows(_history_frame(history, user))
        key = id_text(user) if user is not None else next(iter(rows), None)
        items, ratings = rows.get(key, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        chosen, scores = recommend_history(model, model._known_user(user), items, ratings, k, exclude_seen, allowed)
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
    a mask of the items it may list (:func:`recommend_history` for a user the model never saw)."""
    return recommend_history(model, None, items, ratings, k, allowed=allowed)


def recommend_history(
    model, known: int | None, items, ratings, k: int = 10, exclude_seen: bool = True,
    allowed: np.ndarray | None = None, seen=(),
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The top ``k`` of a user given by a history (known item indices and their ratings, NaN
    where an interaction has none), folded in: a new user (``known`` None) or the known user
    of index ``known`` with more (the history merged into their training row, a newer rating
    replacing the older); the history's items, their training items and ``seen`` (more item
    indices, e.g. items the history names that the fold-in cannot read) excluded unless
    ``exclude_seen`` is False. As arrays: item indices, best first, and their scores."""
    _check_k(k)
    row = _history_row(model, known, items, ratings)
    pool = np.flatnonzero(model.listable())
    if exclude_seen:
        own = np.zeros(0, np.int64) if known is None else model._rated_by(known)
        pool = model._unseen(np.concatenate([row[0], own, np.asarray(seen, np.int64)]).astype(np.int64))
    pool = _narrow(pool, allowed)
    return best(model, model._folded_scores(row, pool, None if known is None else model.user_ids[known]), pool, k)


def predict_history(model, known: int | None, items, ratings, targets: np.ndarray) -> np.ndarray:
    """Scores of the item indices ``targets`` for a user given by a history, folded in as
    :func:`recommend_history` folds it (merged into the training row of the known user
    ``known``, when not None)."""
    row = _history_row(model, known, items, ratings)
    return model._folded_scores(row, np.asarray(targets, np.int64), None if known is None else model.user_ids[known])


def _history_row(model, known: int | None, items, ratings) -> tuple[np.ndarray, np.ndarray]:
    return model._merged_row(known, *model._checked_row(items, ratings))


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
    model, k: int = 10, exclude: Ratings | None = None, batch_users: int = 256, candidates=None, users=None
) -> pd.DataFrame:
    """Every known user's top ``k`` (of ``users``, model indices, when given) in one vectorised
    pass: columns user, item, rank (1 = best), prediction (the score). Candidates are the items
    a list may hold that the user did not see in training nor in ``exclude`` (e.g. the
    validation part), narrowed to ``candidates`` (raw ids) when given. The frames of
    :func:`recommend_batches`, joined."""
    frames = list(recommend_batches(model, k, exclude, batch_users, candidates, users))
    if not frames:
        return pd.DataFrame({"user": [], "item": [], "rank": [], "prediction": []})
    return pd.concat(frames, ignore_index=True)


def recommend_batches(
    model, k: int = 10, exclude: Ratings | None = None, batch_users: int = 256, candidates=None, users=None
) -> Iterator[pd.DataFrame]:
    """:func:`recommend_all` as one frame per ``batch_users`` users (fewer where the catalogue
    is too large for that many, :func:`batch_rows`), made as they are asked for: memory bounded
    by one batch's scores, whatever the number of users and items (a file of every user's list
    is written as it is made).

    Examples:
        >>> from neucf.models import Biases
        >>> r = Ratings.from_arrays([1, 1, 2, 2], [1, 2, 2, 3], [5.0, 3.0, 4.0, 2.0])
        >>> [len(f) for f in recommend_batches(Biases().fit(r), k=1, batch_users=1)]
        [1, 1]
    """
    model._check_fitted()
    _check_k(k)
    seen_users, seen_items = seen_pairs(model, exclude)
    known = model.known_users
    users = np.flatnonzero(known) if users is None else np.unique(np.asarray(users, np.int64)[known[users]])
    allowed = candidate_mask(model, candidates)  # a narrowing of what the model can list
    candidates = np.flatnonzero(model.listable() if allowed is None else allowed)
    if not len(candidates):
        raise DataError("no candidate item is one the model can list")
    column = np.full(len(model.item_ids), -1)
    column[candidates] = np.arange(len(candidates))
    # every user's excluded items, found by row for each batch (work in proportion to the batch)
    seen = sp.csr_matrix((np.ones(len(seen_users), np.float32), (seen_users, seen_items)),
                         shape=(len(model.user_ids), len(model.item_ids)))  # fmt: skip
    # items known only by attributes are scored densely, from their attributes
    sparse_ok = bool(model.known_items[candidates].all())

    def scores_of(batch):
        sparse = model._sparse_scores(batch) if sparse_ok else None
        return model._users_scores(batch, candidates) if sparse is None else sparse

    for batch, scores in score_batches(scores_of, users, len(candidates), batch_users):
        excluded = seen[batch]
        if sp.issparse(scores):
            items = top_sparse(scores, excluded, column >= 0, k)
            rows, ranks = np.nonzero(items >= 0)
            picked = np.asarray(scores[rows, items[rows, ranks]]).ravel()
            items = items[rows, ranks]
        else:
            order = top_dense(model._rank(scores, candidates), excluded[:, candidates], None, k)
            rows, ranks = np.nonzero(order >= 0)
            picked = scores[rows, order[rows, ranks]]
            items = candidates[order[rows, ranks]]
        yield pd.DataFrame({
            "user": model.user_ids[batch[rows]],
            "item": model.item_ids[items],
            "rank": ranks + 1,
            "prediction": np.asarray(picked, np.float32),
        })  # fmt: skip


#: the most scores (users x items) one batch of lists holds: about 200 MB in 32 bits
BATCH_SCORES = 50_000_000


def score_batches(score_users, users: np.ndarray, n_items: int, most: int) -> Iterator[tuple[np.ndarray, object]]:
    """``(batch, score_users(batch))`` over ``users`` in order: batches of ``most`` users while
    the scores come as sparse matrices (their size follows the stored entries), of
    :func:`batch_rows` users while they come dense (``n_items`` columns each).

    Examples:
        >>> [len(b) for b, _ in score_batches(lambda b: np.zeros((len(b), 10**6)), np.arange(120), 10**6, 100)]
        [50, 50, 20]
        >>> [len(b) for b, _ in score_batches(sp.csr_matrix, np.arange(120)[:, None], 10**6, 100)]
        [50, 70]
    """
    dense = batch_rows(n_items, most)
    size, start = dense, 0
    while start < len(users):
        batch = users[start : start + size]
        scores = score_users(batch)
        yield batch, scores
        size = most if sp.issparse(scores) else dense
        start += len(batch)


def batch_rows(n_items: int, most: int) -> int:
    """How many users' scores one batch holds: ``most``, fewer where a catalogue of ``n_items``
    would take more than :data:`BATCH_SCORES` numbers (memory bounded whatever its size).

    Examples:
        >>> batch_rows(3_000, 1024), batch_rows(1_000_000, 1024)
        (1024, 50)
    """
    return int(max(1, min(most, BATCH_SCORES // max(n_items, 1))))


def top_sparse(scores: sp.spmatrix, excluded: sp.spmatrix | None, listable: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_rows` of sparse scores whose missing entries are 0, never listing the
    non-zeros of ``excluded`` (same shape) nor the columns outside ``listable``: -1 where a row
    has fewer than ``k`` such columns. A row with ``k`` positive scores left has its top among
    its stored entries (work in proportion to them, not to the columns); any other row is
    made dense and ranked by :func:`top_rows` (the same lists, ties to the smaller column).

    Examples:
        >>> s = sp.csr_matrix(np.array([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, -1.0, 0.0]]))
        >>> top_sparse(s, None, np.array([True, True, True, False]), 2).tolist()
        [[1, 0], [0, 1]]
    """
    scores = sp.csr_matrix(scores)
    if not scores.has_sorted_indices:  # a sparse product's rows come in any column order
        scores = scores.sorted_indices()
    n, m = scores.shape
    excluded = None if excluded is None else sp.csr_matrix(excluded)
    if excluded is not None and excluded.nnz:  # excluded entries become exact zeros, never listed
        scores = sp.csr_matrix(scores - scores.multiply(excluded != 0))
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(scores.indptr))
    col, value = scores.indices.astype(np.int64), scores.data.astype(np.float32)
    ok = listable[col] & (value > 0)
    row, col, value = row[ok], col[ok], value[ok]
    # one sort by (row, value highest first, column): positive floats order as their bit
    # patterns, and a stable sort keeps each row's stored (column) order among equal values
    key = (row << 32) | (0x7FFFFFFF - value.view(np.int32).astype(np.int64))
    order = np.argsort(key, kind="stable")
    row, col = row[order], col[order]
    rank = np.arange(len(row)) - np.searchsorted(row, np.arange(n))[row]
    keep = rank < k
    top = np.full((n, k), -1, dtype=np.int64)
    top[row[keep], rank[keep]] = col[keep]
    lacking = np.flatnonzero(np.bincount(row[keep], minlength=n) < k)
    # zeros (in column order) and negative scores may make their lists: dense rows, a bounded
    # number at a time
    size = batch_rows(m, len(lacking))
    for first in range(0, len(lacking), size):
        rows = lacking[first : first + size]
        gone = None if excluded is None else excluded[rows]
        top[rows] = top_dense(scores[rows].toarray(), gone, listable, k)
    return top


def top_dense(scores: np.ndarray, excluded: sp.spmatrix | None, listable: np.ndarray | None, k: int) -> np.ndarray:
    """:func:`top_rows` of ``scores`` (left as they are), never listing the non-zeros of
    ``excluded`` (same shape) nor the columns outside ``listable`` (None: every column): -1
    where a row has fewer than ``k`` such columns.

    Examples:
        >>> top_dense(np.array([[3.0, 2.0, 1.0]]), sp.csr_matrix([[1, 0, 0]]), None, 3).tolist()
        [[1, 2, -1]]
    """
    scores = float_copy(scores)
    if listable is not None:
        scores[:, ~listable] = -np.inf
    if excluded is not None:
        gone = excluded.tocoo()
        scores[gone.row, gone.col] = -np.inf
    best = top_rows(scores, k)
    return np.where(np.isfinite(np.take_along_axis(scores, best, axis=1)), best, -1)


def float_copy(scores) -> np.ndarray:
    """A writable copy of ``scores`` in floating point: 32-bit floats stay 32-bit (their order
    is the same in 64 bits; the copy of a large batch is half the memory and time).

    Examples:
        >>> float_copy(np.array([1, 2])).dtype, float_copy(np.zeros(2, np.float32)).dtype
        (dtype('float64'), dtype('float32'))
    """
    scores = np.array(scores)
    return scores if scores.dtype in (np.float32, np.float64) else scores.astype(np.float64)


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` highest columns (all of them where a row has fewer), highest first,
    ties to the smaller column, NaN below every number: the k-th best value (torch's top-k),
    then a stable sort of the columns that reach it.

    Examples:
        >>> top_rows(np.array([[1.0, 3.0, 2.0, 3.0]]), 2).tolist()
        [[1, 3]]
    """
    if np.isnan(scores).any():  # never listed: below every number
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    # torch's top-k is many times faster than numpy's partition
    values, index = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, sorted=True)
    kth = values[:, -1].numpy()
    values, index = values.numpy(), index.numpy()
    top = np.take_along_axis(index, np.lexsort((index, -values)), axis=1)  # ties to the smaller column
    # rows where the k-th best value is shared past the k-th column: which of the tied columns
    # top-k kept is not defined, so they are taken again, the first columns in order
    crowded = np.flatnonzero((scores >= kth[:, None]).sum(1) > k)
    if len(crowded):
        top[crowded] = _top_of_ties(scores[crowded], kth[crowded], k)
    return top


def _top_of_ties(scores: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_rows` of rows whose ``k``-th best value ``kth`` is tied past the ``k``-th column."""
    # every column scoring at least the k-th best, row by row in column order (the work grows
    # with what is kept, not with the row's width)
    rows, cols = np.nonzero(scores >= kth[:, None])
    above = scores[rows, cols] > kth[rows]
    # of the columns tied with the k-th best, the first ones, as many as the row lacks
    tied = np.cumsum(~above)
    starts = np.searchsorted(rows, np.arange(len(scores)))
    before = np.concatenate([[0], tied])[starts]
    lacking = k - np.bincount(rows[above], minlength=len(scores))
    keep = above | (tied - before[rows] <= lacking[rows])
    pool = cols[keep].reshape(len(scores), k)
    order = np.argsort(-np.take_along_axis(scores, pool, axis=1), axis=1, kind="stable")
    return np.take_along_axis(pool, order, axis=1)
