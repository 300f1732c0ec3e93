"""Dropping users and items with too few ratings."""

from __future__ import annotations

import numpy as np

from .ratings import Ratings


def filter_min_ratings(ratings: Ratings, min_item: int = 0, min_user: int = 0, until_stable: bool = False) -> Ratings:
    """Keep items with at least ``min_item`` ratings and users with at least ``min_user``.

    By default the filter runs once, items first then users, as the seed notebook does
    (so a user may fall below ``min_user`` after items were dropped, and vice versa).
    With ``until_stable`` both filters repeat until nothing changes (a k-core).
    The result is compacted: dropped users and items leave the id maps.

    Example:
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
    return ratings.subset(np.flatnonzero(keep)).compact()


def filter_for_split(ratings: Ratings, split: str, min_item: int | None = None, min_user: int = 0, say=None) -> Ratings:
    """The filter a split gets by default: ``coverage`` drops items with < 3 ratings, as the
    seed does (it needs three per item); other splits filter nothing unless asked.
    ``say`` receives a line about what was applied.

    Example:
        >>> r = Ratings.from_arrays([1, 2, 3, 1], ["a", "a", "a", "b"], [1, 2, 3, 4])
        >>> len(filter_for_split(r, "coverage")), len(filter_for_split(r, "random"))
        (3, 4)
    """
    say = say or (lambda text: None)
    if min_item is None:
        min_item = 3 if split == "coverage" else 0
        if split == "coverage":
            say("coverage split: dropping items with fewer than 3 ratings (as the seed does; --min-item-ratings to change)")
    filtered = filter_min_ratings(ratings, min_item=min_item, min_user=min_user)
    if len(filtered) != len(ratings):
        say(f"filter kept {len(filtered):,} of {len(ratings):,} ratings ({filtered.n_users:,} users, {filtered.n_items:,} items)")
    return filtered
