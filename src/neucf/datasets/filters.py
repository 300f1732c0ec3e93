"""Dropping users and items with too few ratings."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import DataError
from .ratings import Ratings

log = logging.getLogger(__name__)


def filter_min_ratings(ratings: Ratings, min_item: int = 0, min_user: int = 0, until_stable: bool = False) -> Ratings:
    """Keep items with at least ``min_item`` ratings and users with at least ``min_user``.

    By default the filter runs once, items first then users, as the seed notebook does
    (so a user may fall below ``min_user`` after items were dropped, and vice versa).
    With ``until_stable`` both filters repeat until nothing changes (a k-core).
    The result is compacted: dropped users and items leave the id maps.

    Examples:
        >>> r = Ratings.from_arrays([1, 2, 3, 1], ["a", "a", "a", "b"], [1, 2, 3, 4])
        >>> filter_min_ratings(r, min_item=3).item_ids.tolist()
        ['a']
    """
    keep = np.ones(len(ratings), dtype=bool)
    while True:
        before = int(keep.sum())
        if min_item > 1:
            counts = np.bincount(ratings.items[keep], minlength=ratings.n_items)
            keep &= counts[ratings.items] >= min_item
        if min_user > 1:
            counts = np.bincount(ratings.users[keep], minlength=ratings.n_users)
            keep &= counts[ratings.users] >= min_user
        if not until_stable or int(keep.sum()) == before:
            break
    if keep.all():
        return ratings
    if not keep.any():
        raise DataError(
            f"no rating is left after keeping items with >= {min_item} and users with >= {min_user} ratings "
            f"(of {len(ratings):,} ratings); lower --min-item-ratings / --min-user-ratings"
        )
    return ratings.subset(np.flatnonzero(keep)).compact()


def k_core(ratings: Ratings, k: int) -> Ratings:
    """The ``k``-core: users and items with at least ``k`` ratings (or interactions), the
    filter repeated until nothing changes (RecBole's ``--k-core``-style filter). Emptying the
    data is a :class:`DataError` naming ``--k-core``.

    Examples:
        >>> r = Ratings.from_arrays([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"], implicit=True)
        >>> len(k_core(r, 2)), k_core(r, 2).user_ids.tolist()
        (4, [1, 2])
    """
    try:
        return filter_min_ratings(ratings, min_item=k, min_user=k, until_stable=True)
    except DataError:
        raise DataError(
            f"--k-core {k} leaves nothing of the {len(ratings):,} ratings (no user and item with {k} or more "
            "among each other); lower it"
        ) from None


def filter_for_split(
    ratings: Ratings, splitter, min_item: int | None = None, min_user: int = 0, k: int | None = None
) -> Ratings:
    """The filter a split gets by default: its ``min_item_ratings`` (coverage: 3, as the seed
    does, for it needs three ratings per item) unless ``min_item`` says otherwise; with ``k``,
    the k-core first (:func:`k_core`). What was applied is logged.

    Examples:
        >>> from neucf.splits import get_splitter
        >>> r = Ratings.from_arrays([1, 2, 3, 1], ["a", "a", "a", "b"], [1, 2, 3, 4])
        >>> len(filter_for_split(r, get_splitter("coverage"))), len(filter_for_split(r, get_splitter("random")))
        (3, 4)
    """
    if min_item is None:
        min_item = splitter.min_item_ratings
        if min_item:
            log.info(
                "%s split: dropping items with fewer than %d ratings (--min-item-ratings to change)",
                splitter.name, min_item,
            )  # fmt: skip
    filtered = ratings if not k else k_core(ratings, k)
    filtered = filter_min_ratings(filtered, min_item=min_item, min_user=min_user)
    if len(filtered) != len(ratings):
        log.info(
            "filter kept %s of %s ratings (%s users, %s items)",
            f"{len(filtered):,}", f"{len(ratings):,}", f"{filtered.n_users:,}", f"{filtered.n_items:,}",
        )  # fmt: skip
    return filtered
