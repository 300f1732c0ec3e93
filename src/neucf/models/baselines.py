"""Baselines that tell whether a neural model is worth it: the global mean and the biases."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UsageError
from .base import Recommender
from .registry import register


@register("mean")
class GlobalMean(Recommender):
    """Predicts the mean training rating for everything.

    Examples:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 2], [1, 1], [2.0, 4.0])
        >>> GlobalMean().fit(r).predict([1], [1]).tolist()
        [3.0]
    """

    can_fold_in = True

    def _fit(self, train, valid, options):
        pass

    def _predict_index(self, users, items):
        return np.full(len(users), self.mean_, dtype=np.float32)

    def _fold_in(self, items, ratings):
        return None

    def _predict_folded(self, state, items):
        return np.full(len(items), self.mean_, dtype=np.float32)


@dataclass
class BiasConfig:
    """Regularisation of the bias baseline.

    ``reg_user`` and ``reg_item`` left unset (None) are estimated from the data by empirical
    Bayes (:func:`~neucf.models.bias_regularisation`); Surprise's fixed 15 and 10 are one
    ``--reg-user 15 --reg-item 10`` away.

    Examples:
        >>> BiasConfig().reg_user is None
        True
    """

    reg_user: float | None = field(
        default=None, metadata={"help": "Shrinkage of user biases (unset: estimated from the data)."}
    )
    reg_item: float | None = field(
        default=None, metadata={"help": "Shrinkage of item biases (unset: estimated from the data)."}
    )
    n_iter: int = field(default=10, metadata={"help": "Alternating least-squares sweeps."})

    def __post_init__(self):
        if (self.reg_user or 0) < 0 or (self.reg_item or 0) < 0 or self.n_iter < 1:
            raise UsageError("reg_user and reg_item must be >= 0 and n_iter >= 1")


@register("bias")
class Biases(Recommender):
    """``mean + b_u + b_i`` with regularised biases, fitted by alternating least squares.

    Examples:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
        >>> Biases(reg_user=0, reg_item=0).fit(r).predict([2], [1]).round(2).tolist()
        [4.0]
    """

    config_class = BiasConfig

    @classmethod
    def search_space(cls, trial) -> dict:
        """Both shrinkage strengths."""
        return {
            "reg_user": trial.suggest_float("reg_user", 0.0, 40.0),
            "reg_item": trial.suggest_float("reg_item", 0.0, 40.0),
        }

    @classmethod
    def unregularised(cls) -> dict:
        """No shrinkage."""
        return {"reg_user": 0.0, "reg_item": 0.0}

    can_fold_in = True

    def _bias_settings(self):
        return self.config.reg_user, self.config.reg_item, self.config.n_iter

    def _fit(self, train, valid, options):
        # the base class fitted the biases with this model's settings; keep the shrinkage used
        self.reg_user_, self.reg_item_ = self.bias_fit_.reg_user, self.bias_fit_.reg_item

    def _fold_in(self, items, ratings):
        """The user's bias from their ratings, with the items' biases fixed (one ALS half-step)."""
        residual = np.asarray(ratings, dtype=np.float64) - self.mean_ - self.item_bias_[items]
        return residual.sum() / (len(residual) + self.reg_user_)

    def _state(self):
        return {"reg": [self.reg_user_, self.reg_item_]}

    def _restore(self, state, device):
        self.reg_user_, self.reg_item_ = state["reg"]

    def _predict_folded(self, user_bias, items):
        return (self.mean_ + user_bias + self.item_bias_[items]).astype(np.float32)

    def _predict_index(self, users, items):
        return (self.mean_ + self.user_bias_[users] + self.item_bias_[items]).astype(np.float32)


@register("pop")
class Popularity(Recommender):
    """The usual top-N baseline: ranks items by their number of training ratings or
    interactions (the same list for everyone, less what each user has seen). For the rating
    task its predictions are the item means, so that RMSE stays defined; for the ranking
    task its scores are the items' popularity (the share of users who have them).

    Examples:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 2, 3, 1], [7, 7, 7, 8], [2.0, 4.0, 3.0, 5.0])
        >>> model = Popularity().fit(r)
        >>> model.recommend(2, k=1)["item"].tolist(), model.predict([1], [7]).tolist()
        ([8], [3.0])
        >>> Popularity(task="ranking").fit(r).predict([1], [7]).round(2).tolist()
        [1.0]
    """

    can_fold_in = True
    tasks = ("rating", "ranking")

    def _fit(self, train, valid, options):
        counts = np.bincount(train.items, minlength=train.n_items)
        self.item_counts_ = counts
        if self.task == "ranking":
            self.item_means_ = self.item_bias_  # the popularity share (see Recommender.fit)
            return
        sums = np.bincount(train.items, train.ratings.astype(np.float64), minlength=train.n_items)
        self.item_means_ = np.where(counts > 0, sums / np.maximum(counts, 1), self.mean_)

    def _predict_index(self, users, items):
        return self.item_means_[items].astype(np.float32)

    def _rank(self, predictions, items):
        return np.broadcast_to(self.item_counts_[items].astype(np.float64), np.shape(predictions))

    def _fold_in(self, items, ratings):
        return None

    def _predict_folded(self, state, items):
        return self.item_means_[items].astype(np.float32)

    def _state(self):
        return {"counts": torch.from_numpy(self.item_counts_), "means": torch.from_numpy(self.item_means_)}

    def _restore(self, state, device):
        self.item_counts_, self.item_means_ = state["counts"].numpy(), state["means"].numpy()
