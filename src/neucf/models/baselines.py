"""Baselines that tell whether a neural model is worth it: global mean, biases, biased MF."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Recommender
from .networks import BiasedMFNet
from .trained import TorchRecommender


class GlobalMean(Recommender):
    """Predicts the mean training rating for everything.

    Example:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 2], [1, 1], [2.0, 4.0])
        >>> GlobalMean().fit(r).predict([1], [1]).tolist()
        [3.0]
    """

    name = "mean"

    def _fit(self, train, valid):
        pass

    def _predict_index(self, users, items):
        return np.full(len(users), self.mean_, dtype=np.float32)


@dataclass
class BiasConfig:
    """Regularisation of the bias baseline (Surprise's ALS defaults: 15 for users, 10 for items).

    Example:
        >>> BiasConfig().reg_user
        15.0
    """

    reg_user: float = 15.0
    reg_item: float = 10.0
    n_iter: int = 10


class Biases(Recommender):
    """``mean + b_u + b_i`` with regularised biases, fitted by alternating least squares.

    Example:
        >>> from neucf.datasets import Ratings
        >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
        >>> Biases(reg_user=0, reg_item=0).fit(r).predict([2], [1]).round(2).tolist()
        [4.0]
    """

    name = "bias"
    config_class = BiasConfig

    def _bias_settings(self):
        return self.config.reg_user, self.config.reg_item, self.config.n_iter

    def _fit(self, train, valid):
        pass  # the base class fitted the biases with this model's settings

    def _predict_index(self, users, items):
        return (self.mean_ + self.user_bias_[users] + self.item_bias_[items]).astype(np.float32)


@dataclass
class MFConfig:
    """Biased MF settings; defaults are Surprise's tuned SVD on ml-100k (100 factors, reg 0.1).

    Example:
        >>> MFConfig().factors
        100
    """

    factors: int = 100
    init_std: float = 0.1


class MatrixFactorization(TorchRecommender):
    """Biased matrix factorisation, SVD-style: ``mean + b_u + b_i + p_u . q_i``.

    Example:
        >>> MatrixFactorization(factors=50, epochs=20).training.epochs
        20
    """

    name = "mf"
    config_class = MFConfig
    train_defaults = {"lr": 3e-3, "l2": 0.1, "batch_size": 256}

    def _build(self, train):
        return BiasedMFNet(train.n_users, train.n_items, self.config.factors,
                           float(train.ratings.mean()), self.config.init_std)
