"""What the models that rank items for lists share: their interaction matrix, the relevance
threshold they aim at, a validation part to choose their settings on, and its NDCG.

A ranking model learns from interactions: on data without ratings every interaction; on
rated data every rating counts as one (the user chose the item), and the model aims its
lists at the items a user will rate at or above its relevance threshold (``relevant``;
three quarters up the scale unless given), which its validation measures.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2], [7, 8, 7], [5.0, 2.0, 4.0])
    >>> interactions(r).toarray().tolist()
    [[1.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..datasets import Ratings
from ..metrics import check_relevance, default_relevance
from ..splits import held_out_mask
from .attribute_maps import MapScoring
from .base import Recommender

#: the share of train held out to choose settings when a split has no validation part
HELD_OUT = 0.1


def interactions(ratings: Ratings, weights: bool = False) -> sp.csr_matrix:
    """The users x items interaction matrix of ``ratings``: 1 where a user has an item (with
    ``weights``, an interaction's weight: a count of plays; ratings count as 1 either way)."""
    values = ratings.ratings if weights and ratings.implicit else np.ones(len(ratings), np.float32)
    return sp.csr_matrix(
        (np.asarray(values, np.float32), (ratings.users, ratings.items)), shape=(ratings.n_users, ratings.n_items)
    )


@dataclass
class RankingConfig:
    """What every ranking model takes: the rating it aims its lists at.

    Attributes:
        relevant: on rated data, the rating from which an item counts as a hit for the
            validation that chooses a model's settings (and for ``hybrid``'s "will they like
            it"); unset: three quarters up the scale (4 on 1-5). A rating of
            the data's scale; interactions without ratings take none (every one counts).

    Examples:
        >>> RankingConfig().relevant is None
        True
    """

    relevant: float | None = field(
        default=None,
        metadata={"help": "Rated data: the rating from which an item is relevant (default 3/4 up the scale)."},
    )


class RankingModel(MapScoring, Recommender):
    """Base of the models made to rank items (the ranking task): scores are ranking scores, not
    ratings; users fold in from their history (items, with ratings or not); users and items
    known only by attributes are scored by linear maps (:class:`MapScoring`)."""

    tasks: ClassVar[tuple[str, ...]] = ("ranking",)
    can_fold_in: ClassVar[bool] = True

    @property
    def relevance_threshold(self) -> float | None:
        """The rating from which a held-out item counts as relevant (None: every interaction)."""
        if self.implicit or self.scale is None:
            return None
        own = getattr(self.config, "relevant", None)
        return float(own) if own is not None else default_relevance(self.scale)

    def check_data(self, train: Ratings) -> None:
        """``relevant`` is a rating of ``train``'s scale, and given only for rated data."""
        relevant = getattr(self.config, "relevant", None)
        if relevant is not None:
            check_relevance(relevant, train.scale, train.implicit)

    def _training_interactions(self) -> sp.csr_matrix:
        """The users x items matrix of the interactions the model was fitted on (1 each)."""
        users, items, _ = self.train_
        ones = np.ones(len(users), np.float32)
        ids = self._trained_ids()
        return sp.csr_matrix((ones, (users, items)), shape=(len(ids["user_ids"]), len(ids["item_ids"])))

    def _split_for_settings(self, train: Ratings, valid: Ratings | None) -> tuple[Ratings, Ratings]:
        """The training and validation parts that choose the model's settings: ``valid`` when
        given, else a seeded :data:`HELD_OUT` share of ``train`` (the model is then fitted on
        all of train with the settings chosen)."""
        if valid is not None and len(valid):
            return train, valid
        held = held_out_mask(len(train), self.seed, HELD_OUT)
        return train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))

    def _validation_sample(self, check: Ratings, most: int) -> Ratings:
        """At most ``most`` of ``check``'s users (a sample seeded by the model's seed), with all
        their rows: what a model validates on when scoring every user against a large catalogue
        for each setting would cost more than the setting is worth."""
        users = np.unique(check.users)
        if len(users) <= most:
            return check
        chosen = np.random.default_rng(self.seed).choice(users, most, replace=False)
        return check.subset(np.flatnonzero(np.isin(check.users, chosen)))

    def _relevant_pairs(self, valid: Ratings) -> tuple[np.ndarray, np.ndarray]:
        """The (user, item) indices of ``valid`` that count as hits."""
        threshold = self.relevance_threshold
        mask = np.ones(len(valid), bool) if threshold is None else valid.ratings >= threshold
        return valid.users[mask].astype(np.int64), valid.items[mask].astype(np.int64)

    def _validation_ndcg(self, score_users, seen: sp.csr_matrix, valid: Ratings, k: int = 10) -> float:
        """NDCG@``k`` of the lists ``score_users(users) -> (len(users), n_items)`` makes for
        ``valid``'s users, their ``seen`` items (a users x items matrix) excluded, against
        their relevant ``valid`` items (full ranking over the items with training data)."""
        from ..evaluation import lists_metrics

        return float(lists_metrics(score_users, seen, *self._relevant_pairs(valid), k)["ndcg"])
