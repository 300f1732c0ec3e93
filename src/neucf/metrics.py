"""How predictions are judged.

Examples:
    >>> rmse([1, 2, 3], [1, 2, 5]), mae([1, 2, 3], [1, 2, 5])
    (1.1547005383792515, 0.6666666666666666)
"""

from __future__ import annotations

import numpy as np


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


def default_relevance(scale: tuple[float, float]) -> float:
    """The rating from which a test item counts as relevant: three quarters up the scale
    (4 on 1-5; ratings >= 3.875, i.e. 4 and up, on 0.5-5; 5 on -10..10).

    Examples:
        >>> default_relevance((1, 5)), default_relevance((0.5, 5))
        (4.0, 3.875)
    """
    low, high = scale
    return float(low + 0.75 * (high - low))


def check_relevance(relevant: float, scale, implicit: bool, name: str = "relevant", whose: str = "the data's") -> None:
    """Refuse (:class:`~neucf.errors.UsageError`) a relevance threshold for interactions
    without ratings (every one counts), or one outside the rating ``scale``; ``name`` and
    ``whose`` word the message (``--relevant``, ``the run's``).

    Examples:
        >>> check_relevance(10, (1, 5), False)
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: relevant 10 is outside the data's rating scale 1..5: give a rating from it, e.g. 4
    """
    from .errors import UsageError

    if implicit:
        raise UsageError(f"{name} is for rated data: {whose} interactions have no ratings (every one counts)")
    low, high = scale
    if not low <= relevant <= high:
        raise UsageError(
            f"{name} {relevant:g} is outside {whose} rating scale {low:g}..{high:g}: give a rating from it, "
            f"e.g. {default_relevance(scale):g}"
        )


def ranking_metrics(top: np.ndarray, relevant: list[np.ndarray], k: int) -> dict:
    """Precision, recall, hit rate, NDCG and MAP of top-k lists, averaged over users.

    ``top`` is users x k items, best first (-1 or None pads a list shorter than k);
    ``relevant[u]`` holds user u's relevant items (items that cannot be recommended count too:
    missing them is the model's loss). Users without a relevant item are skipped and counted.
    Per user, with ``hits`` the relevant items in the list: precision = hits / k;
    recall = hits / |relevant|; hit rate = 1 if hits > 0; NDCG with binary gains and
    log2(rank + 1) discounts over an ideal DCG of min(k, |relevant|) items; MAP = the sum of
    precision@rank at each hit / min(k, |relevant|).

    Examples:
        >>> top = np.array([[1, 2, 3], [4, 5, 6]])
        >>> m = ranking_metrics(top, [np.array([2, 9]), np.array([], dtype=int)], k=3)
        >>> m["users"], m["skipped"], round(m["precision"], 4), m["recall"], m["hit_rate"]
        (1, 1, 0.3333, 0.5, 1.0)
        >>> round(m["ndcg"], 4), m["map"]
        (0.3869, 0.25)
    """
    top = np.asarray(top)
    sums = dict.fromkeys(("precision", "recall", "hit_rate", "ndcg", "map"), 0.0)
    users = 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for row, rel in zip(top, relevant):
        if len(rel) == 0:
            continue
        users += 1
        hit = np.isin(row[:k], rel)  # the padding (-1 or None) is never a relevant item
        hits = int(hit.sum())
        ideal = min(k, len(rel))
        sums["precision"] += hits / k
        sums["recall"] += hits / len(rel)
        sums["hit_rate"] += float(hits > 0)
        sums["ndcg"] += float(discounts[: len(hit)][hit].sum() / discounts[:ideal].sum())
        ranks = np.flatnonzero(hit) + 1
        sums["map"] += float((np.arange(1, hits + 1) / ranks).sum() / ideal)
    out = {name: (value / users if users else float("nan")) for name, value in sums.items()}
    return {"k": k, "users": users, "skipped": len(relevant) - users, **out}
