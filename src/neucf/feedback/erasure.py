"""Erasure at training time: the rows of every user erased in a feedback store leave a split,
whatever data the split was made from (the run's own training data included).

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.splits import Split
    >>> r = Ratings.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0])
    >>> without_erased(r, Split(np.array([0, 1, 2]), np.array([], int), np.array([], int)), {"1"}).train.tolist()
    [2]
"""

from __future__ import annotations

import logging

import numpy as np

from ..datasets import Ratings
from ..datasets.ratings import id_text
from ..splits import Split

log = logging.getLogger(__name__)


def erased_rows(ratings: Ratings, erased: set[str]) -> np.ndarray:
    """A mask of the rows of ``ratings`` whose user (matched as text) is in ``erased``."""
    if not erased:
        return np.zeros(len(ratings), bool)
    gone = np.array([id_text(x) in erased for x in ratings.user_ids], dtype=bool)
    return gone[ratings.users]


def without_erased(ratings: Ratings, parts: Split, erased: set[str]) -> Split:
    """``parts`` without the rows of the users in ``erased`` (each part keeps its order, so the
    other users' split is the one it was)."""
    gone = erased_rows(ratings, erased)
    if not gone.any():
        return parts
    kept = Split(*(p[~gone[p]] for p in (parts.train, parts.valid, parts.test)))
    users = len(np.unique(ratings.users[gone]))
    log.info("left out %d row(s) of %d erased user(s) (the feedback store's erasures)", int(gone.sum()), users)
    return kept
