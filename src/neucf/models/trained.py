"""The estimator face of models trained by :class:`~neucf.training.Trainer` (MF and the
neural models): parameters split between architecture and training configs, a held-out
validation share when none is given, persistence of the network."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from ..datasets import Ratings
from ..errors import UsageError
from ..training import TrainConfig, Trainer, predict_batches
from .base import Recommender


def split_params(params: dict, *configs: type) -> list[dict]:
    """Share keyword arguments out between dataclasses by field name; unknown names are errors."""
    out = [{} for _ in configs]
    for key, value in params.items():
        for slot, cls in zip(out, configs):
            if key in {f.name for f in fields(cls)}:
                slot[key] = value
                break
        else:
            raise UsageError(f"unknown parameter {key!r}")
    return out


def held_out_mask(n: int, cfg: TrainConfig) -> np.ndarray:
    """The seeded ``valid_fraction`` of n training ratings held out when no validation part is given."""
    return np.random.default_rng(cfg.seed).random(n) < cfg.valid_fraction


class TorchRecommender(Recommender):
    """A model whose network is trained by :class:`~neucf.training.Trainer`.

    Keyword arguments are split between the model's architecture config and
    :class:`~neucf.training.TrainConfig` by name (``NeuMF(factors=16, epochs=10)``).
    """

    train_defaults: dict = {}
    #: called with each epoch's figures while fitting (e.g. Optuna pruning); not saved
    epoch_callback = None

    def __init__(self, unknown: str = "error", **params):
        arch, train = split_params(params, self.config_class, TrainConfig)
        super().__init__(unknown=unknown, **arch)
        self.training = TrainConfig(**{**self.train_defaults, **train})

    def _build(self, train: Ratings) -> torch.nn.Module:
        raise NotImplementedError

    def _fit(self, train, valid):
        cfg = self.training
        arrays = (train.users, train.items, train.ratings)
        if valid is not None and len(valid):
            self.held_out_ = None
            fit_arrays, valid_arrays = arrays, (valid.users, valid.items, valid.ratings)
        else:
            self.held_out_ = held_out_mask(len(train), cfg)
            fit_arrays = tuple(a[~self.held_out_] for a in arrays)
            valid_arrays = tuple(a[self.held_out_] for a in arrays)
        # the network reads its inputs from the matrix it is trained on (held-out ratings excluded)
        self.inputs_ = fit_arrays
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net = self._build(self._input_ratings())
            self.history = Trainer(cfg).fit(self.net, fit_arrays, valid_arrays, self.epoch_callback).__dict__
        self.net.to("cpu")

    def _predict_index(self, users, items):
        pred = predict_batches(self.net, torch.from_numpy(users), torch.from_numpy(items))
        return pred.to(torch.float32).numpy()

    @property
    def held_out_validation(self) -> bool:
        """Whether early stopping used a held-out share of train (no validation part was given)."""
        return self.held_out_ is not None

    def _input_ratings(self) -> Ratings:
        users, items, values = self.inputs_
        return Ratings(users=users, items=items, ratings=values, user_ids=self.user_ids,
                       item_ids=self.item_ids, scale=self.scale)

    def _state(self):
        return {"weights": self.net.state_dict(), "training": self.training.__dict__,
                "held_out": None if self.held_out_ is None else torch.from_numpy(self.held_out_)}

    def _restore(self, state):
        self.training = TrainConfig(**state["training"])
        self.held_out_ = None if state["held_out"] is None else state["held_out"].numpy()
        self.inputs_ = self.train_ if self.held_out_ is None else tuple(a[~self.held_out_] for a in self.train_)
        self.net = self._build(self._input_ratings())
        self.net.to(dtype=self.training.torch_dtype())
        self.net.load_state_dict(state["weights"])
        self.net.eval()
