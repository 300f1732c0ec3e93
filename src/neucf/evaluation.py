"""How a fitted model is judged on a held-out part: rating error, full-ranking metrics of its
top-k lists, and (opt-in) the NCF paper's sampled protocol.

Metric definitions are in :mod:`neucf.metrics`; this module makes the lists and the ground
truth they are compared with.

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> r = Ratings.from_arrays([1, 1, 2, 2], [1, 2, 1, 2], [5.0, 3.0, 4.0, 2.0])
    >>> model = Biases().fit(r.subset([0, 1, 2]))
    >>> sorted(rating_metrics(model, r.subset([3])))
    ['mae', 'n', 'n_fallback', 'rmse']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets import Ratings
from .datasets.ratings import id_text, lookup_ids
from .errors import DataError, UsageError
from .lists import recommend_all, recommend_index, score_batches, top_dense, top_sparse
from .metrics import default_relevance, mae, ranking_metrics, rmse


def lists_metrics(
    score_users, seen, users: np.ndarray, items: np.ndarray, k: int = 10, listable: np.ndarray | None = None
) -> dict:
    """Ranking metrics of top-``k`` lists given by index: ``score_users(batch)`` scores a batch
    of user indices against every item (a (len(batch), n_items) array, or a sparse matrix whose
    missing entries are 0: :func:`~neucf.lists.top_sparse`); a user's ``seen``
    items (a users x items sparse matrix) are never listed, nor items outside ``listable`` (a
    mask; default: the items some user has seen); ``users``/``items``: the relevant (user,
    item) pairs. What the ranking models' validation and the benchmarks' peers are scored
    with (full ranking, as :func:`evaluate_ranking`).

    Examples:
        >>> import scipy.sparse as sp
        >>> seen = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 1, 0]], dtype=np.float32))
        >>> scores = lambda batch: np.tile([3.0, 2.0, 1.0, 0.0], (len(batch), 1))
        >>> lists_metrics(scores, seen, np.array([0, 1]), np.array([1, 3]), k=1)["ndcg"]
        0.5
    """
    if len(users) == 0:
        return {"ndcg": float("nan"), "recall": float("nan"), "users": 0}
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    who, starts = np.unique(users, return_index=True)
    relevant = np.split(items, starts[1:])
    unknown = ~listable if listable is not None else np.asarray(seen.sum(0)).ravel() == 0
    tops = []
    for batch, scores in score_batches(score_users, who, seen.shape[1], 1024):
        # sparse scores' missing entries are 0: their top is found among the stored ones, mostly
        top = top_sparse if sp.issparse(scores) else top_dense
        tops.append(top(scores, seen[batch], ~unknown, k))
    return ranking_metrics(np.concatenate(tops), relevant, k)


#: the kinds of a test rating, by what the model knew of its user and item
PART_KINDS = ("warm", "new_items", "new_users", "both_new")


def _mapped(model, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """``ratings``' users and items as the model's indices (-1: not in its id maps)."""
    u = lookup_ids(model.user_ids, ratings.user_ids[ratings.users], "user", missing_ok=True)
    i = lookup_ids(model.item_ids, ratings.item_ids[ratings.items], "item", missing_ok=True)
    return u, i


def part_kinds(model, ratings: Ratings) -> np.ndarray:
    """Each rating's kind, an index into :data:`PART_KINDS`: ``warm`` (the model has training
    data of its user and of its item), ``new_items`` (of the user only), ``new_users`` (of
    the item only) or ``both_new``.

    Examples:
        >>> from neucf.models import Biases
        >>> r = Ratings.from_arrays([1, 1, 2, 3], [1, 2, 1, 9], [5.0, 3.0, 4.0, 2.0])
        >>> [PART_KINDS[k] for k in part_kinds(Biases().fit(r.subset([0, 1])), r)]
        ['warm', 'warm', 'new_users', 'both_new']
    """
    u, i = _mapped(model, ratings)
    user_known = (u >= 0) & model.known_users[np.maximum(u, 0)]
    item_known = (i >= 0) & model.known_items[np.maximum(i, 0)]
    return 2 * (~user_known).astype(np.int64) + (~item_known)


def rating_metrics(model, ratings: Ratings) -> dict:
    """RMSE and MAE of a rating model on ``ratings`` (raw ids are matched); unknown users and
    items get the baseline, and ``n_fallback`` says how often. When ``ratings`` hold several
    kinds (:func:`part_kinds`: a cold-start split's test part), ``parts`` has each kind's
    RMSE, MAE and count."""
    model._check_fitted()
    if model.task != "rating":
        raise UsageError(f"the {model.name} model ranks items (a ranking run): it predicts no ratings to score")
    if len(ratings) == 0:
        raise DataError("no ratings to evaluate on")
    if ratings.implicit:
        raise DataError("the test part holds interactions without ratings: there is no rating error to measure")
    pred, known = model._predict_mapped(*_mapped(model, ratings), "fallback")
    result = {
        "rmse": rmse(ratings.ratings, pred),
        "mae": mae(ratings.ratings, pred),
        "n": len(ratings),
        "n_fallback": int((~known).sum()),
    }
    kinds = part_kinds(model, ratings)
    if len(np.unique(kinds)) > 1:
        result["parts"] = {
            name: {"rmse": rmse(ratings.ratings[mine], pred[mine]), "mae": mae(ratings.ratings[mine], pred[mine]),
                   "n": int(mine.sum())}
            for kind, name in enumerate(PART_KINDS) if (mine := kinds == kind).any()
        }  # fmt: skip
    return result


def relevance_threshold(model, test: Ratings, relevant: float | None) -> float | None:
    """The rating from which a test item counts as relevant: ``relevant``, else the model's own
    (a ranking model made for a threshold keeps it), else three quarters up the scale; None
    (every test interaction) for interactions without ratings."""
    if test.implicit:
        return None
    if relevant is not None:
        return float(relevant)
    own = getattr(model, "relevance_threshold", None)
    return float(own) if own is not None else default_relevance(test.scale or model.scale)


def _relevant_by_user(test: Ratings, threshold: float | None) -> tuple[list, dict]:
    """Test users (as text, in order of appearance) and each one's relevant items (as text)."""
    texts = np.vectorize(id_text, otypes=[object])
    users, items = texts(test.user_ids[test.users]), texts(test.item_ids[test.items])
    mask = np.ones(len(test), bool) if threshold is None else test.ratings >= threshold
    grouped = pd.Series(items[mask]).groupby(users[mask])
    return list(dict.fromkeys(users)), {u: np.asarray(v) for u, v in grouped}


def evaluate_ranking(
    model, test: Ratings, k: int = 10, relevant: float | None = None, exclude: Ratings | None = None
) -> dict:
    """Full-ranking metrics of the top-``k`` lists (see :func:`neucf.metrics.ranking_metrics`)
    against ``test``'s relevant items: those rated >= ``relevant`` (see
    :func:`relevance_threshold`), or every test interaction for interactions.

    Candidates: every item with training data that the user did not see in training or in
    ``exclude`` (the validation part); relevant items the model cannot rank (never in
    training) still count. Users with no relevant test item are skipped and counted; test
    users the model never saw get the item baseline's list (those it knows by attributes, their
    own list). When ``test`` holds several kinds
    of rows (:func:`part_kinds`), ``parts`` has each kind's NDCG and recall (of the same
    lists, against that kind's relevant rows) where it has relevant rows.
    """
    threshold = relevance_threshold(model, test, relevant)
    texts = np.vectorize(id_text, otypes=[object])
    users, by_user = _relevant_by_user(test, threshold)
    # lists only for the users scored: their ids as the model's indices
    mapped = lookup_ids(model.user_ids, test.user_ids[np.unique(test.users)], "user", missing_ok=True)
    tops = recommend_all(model, k=k, exclude=exclude, users=mapped[mapped >= 0])
    tops = tops.assign(user=texts(tops["user"].to_numpy()), item=texts(tops["item"].to_numpy()))
    lists = tops.groupby("user", sort=False)["item"].apply(np.asarray).to_dict()
    baseline = None
    top = np.full((len(users), k), None, dtype=object)
    by_attributes = _attribute_users(model)
    for row, user in enumerate(users):
        items = lists.get(user)
        if items is None and user in by_attributes:  # a user the model knows by attributes: theirs
            items = texts(model.item_ids[recommend_index(model, by_attributes[user], k)[0]])
        if items is None:  # a user without training data: the item baseline's ranking
            if baseline is None:
                known = np.flatnonzero(model.known_items)
                order = np.argsort(-model.item_bias_[known], kind="stable")[:k]
                baseline = texts(model.item_ids[known[order]])
            items = baseline
        top[row, : len(items)] = items
    empty = np.array([], dtype=object)
    result = ranking_metrics(top, [by_user.get(u, empty) for u in users], k)
    result = {"protocol": "full", "k": k, "relevant": threshold, **{key: v for key, v in result.items() if key != "k"}}
    kinds = part_kinds(model, test)
    if len(np.unique(kinds)) > 1:
        result["parts"] = {}
        for kind, name in enumerate(PART_KINDS):
            _, relevant_of = _relevant_by_user(test.subset(np.flatnonzero(kinds == kind)), threshold)
            rows = [row for row, user in enumerate(users) if user in relevant_of]
            if rows:
                part = ranking_metrics(top[rows], [relevant_of[users[row]] for row in rows], k)
                result["parts"][name] = {key: part[key] for key in ("ndcg", "recall", "users")}
    return result


def _attribute_users(model) -> dict:
    """The users (as text) that ``model`` knows by attributes only, and their indices."""
    index = np.flatnonzero(model.scorable("user") & ~model.known_users)
    return {id_text(model.user_ids[u]): int(u) for u in index}


def sampled_ranking(
    model, test: Ratings, k: int = 10, negatives: int = 99, relevant: float | None = None,
    exclude: Ratings | None = None, seed: int = 0,
) -> dict:  # fmt: skip
    """The NCF paper's *sampled* protocol (He et al. 2017): each relevant test item is ranked
    among ``negatives`` items drawn at random (seeded) from the known items the user has not
    seen in training, in ``exclude`` or in ``test``; hit rate (the item in the top ``k``)
    and NDCG (``1 / log2(rank + 2)`` when it is, else 0), averaged over those items. A tie
    with a negative counts against the item. Opt-in and labelled "sampled": it overstates
    quality and can reorder models against full ranking (Krichene & Rendle 2020).

    Examples:
        >>> from neucf.datasets import Ratings
        >>> from neucf.models import Popularity
        >>> r = Ratings.from_arrays([1, 1, 2, 2, 3, 3], [1, 2, 1, 3, 2, 3], implicit=True)
        >>> model = Popularity(task="ranking").fit(r.subset([0, 1, 2, 3, 4]))
        >>> result = sampled_ranking(model, r.subset([5]), k=1, negatives=1)
        >>> result["pairs"], result["hit_rate"]  # item 3 (1 user) ranks below item 1 (2 users)
        (1, 0.0)
    """
    model._check_fitted()
    threshold = relevance_threshold(model, test, relevant)
    mask = np.ones(len(test), bool) if threshold is None else test.ratings >= threshold
    u = lookup_ids(model.user_ids, test.user_ids[test.users], "user", missing_ok=True)
    i = lookup_ids(model.item_ids, test.item_ids[test.items], "item", missing_ok=True)
    known = (u >= 0) & (i >= 0)
    known[known] &= model.known_users[u[known]] & model.known_items[i[known]]
    pairs = np.flatnonzero(mask & known)
    seen = np.zeros((len(model.user_ids), len(model.item_ids)), bool)
    from .lists import seen_pairs

    su, si = seen_pairs(model, exclude)
    seen[su, si] = True
    seen[u[known], i[known]] = True
    catalogue = np.flatnonzero(model.known_items)
    rng = np.random.default_rng(seed)
    hits, gains = np.zeros(len(pairs)), np.zeros(len(pairs))
    order = pairs[np.argsort(u[pairs], kind="stable")]
    for user in np.unique(u[order]):
        mine = order[u[order] == user]
        pool = catalogue[~seen[user, catalogue]]
        if len(pool) < negatives:
            raise DataError(
                f"the sampled protocol needs {negatives} unseen items per user; a user has only {len(pool)}"
            )
        scores = model._score_user(int(user), catalogue, unseen=False)
        column = np.full(len(model.item_ids), -1)
        column[catalogue] = np.arange(len(catalogue))
        for pair in mine:
            drawn = rng.choice(pool, negatives, replace=False)
            own = scores[column[i[pair]]]
            rank = int((scores[column[drawn]] >= own).sum())
            slot = np.searchsorted(pairs, pair)
            hits[slot] = rank < k
            gains[slot] = 1.0 / np.log2(rank + 2) if rank < k else 0.0
    return {
        "protocol": "sampled",
        "negatives": negatives,
        "k": k,
        "relevant": threshold,
        "pairs": len(pairs),
        "skipped": int((mask & ~known).sum()),
        "hit_rate": float(hits.mean()) if len(pairs) else float("nan"),
        "ndcg": float(gains.mean()) if len(pairs) else float("nan"),
    }
