"""An example plugin: a model added in this one file, with nothing else in neucf touched.

It predicts each item's mean rating shrunk towards the global mean by ``shrinkage``
pseudo-ratings, plus a learned user offset trained by gradient; it has a typed config, a
search space and a regulariser that ``diagnose overfit`` can switch off. Registering it
(importing this module) makes it a ``--model`` for train, compare, tune and diagnose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neucf.models import TorchRecommender, register


@dataclass
class ShrunkItemMeanConfig:
    """How strongly item means are pulled towards the global mean."""

    shrinkage: float = field(default=5.0, metadata={"help": "Pseudo-ratings at the global mean per item."})


class ShrunkItemMeanNet(nn.Module):
    """Fixed shrunk item means plus a learned offset per user."""

    def __init__(self, item_means: np.ndarray, n_users: int):
        super().__init__()
        self.register_buffer("item_means", torch.as_tensor(item_means, dtype=torch.float32))
        self.user_offset = nn.Embedding(n_users, 1)
        nn.init.zeros_(self.user_offset.weight)

    def forward(self, users, items):
        return self.item_means[items] + self.user_offset(users).squeeze(1)

    def predict_and_penalty(self, users, items, l2):
        offset = self.user_offset(users).squeeze(1)
        return self.item_means[items] + offset, l2 * (offset**2).mean()


@register("shrunk-item-mean")
class ShrunkItemMean(TorchRecommender):
    """Shrunk item mean + user offset (an example of a plugin model)."""

    config_class = ShrunkItemMeanConfig
    train_defaults = {"lr": 0.05, "l2": 0.01, "batch_size": 256}

    @classmethod
    def search_space(cls, trial) -> dict:
        return {**super().search_space(trial), "shrinkage": trial.suggest_float("shrinkage", 0.0, 20.0)}

    def _build(self, train):
        mean = float(train.ratings.mean())
        sums = np.bincount(train.items, train.ratings, minlength=train.n_items)
        counts = np.bincount(train.items, minlength=train.n_items)
        k = self.config.shrinkage
        return ShrunkItemMeanNet((sums + k * mean) / (counts + k), train.n_users)
