"""A weighted average of several fitted models: seeds and kinds, weights fitted on validation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..errors import UsageError
from ..training import TrainConfig
from .base import Recommender
from .persistence import from_payload, payload
from .registry import make_model, model_class, register
from .torch_estimator import TorchRecommender, held_out_mask


@dataclass
class EnsembleConfig:
    """Which models an ensemble averages.

    Attributes:
        members: registered model names, comma-separated; each is fitted ``seeds`` times.
        seeds: fits of each member kind, with seeds ``seed``, ``seed + 1``, ...

    Examples:
        >>> EnsembleConfig().members
        'neumf,gmf'
    """

    members: str = field(default="neumf,gmf", metadata={"help": "Models an ensemble averages (comma-separated)."})
    seeds: int = field(default=4, metadata={"help": "Fits of each ensemble member, with consecutive seeds."})

    def __post_init__(self):
        if self.seeds < 1:
            raise UsageError(f"seeds must be >= 1, got {self.seeds}")
        kinds = self.kinds()
        if not kinds or "ensemble" in kinds:
            raise UsageError("members must name one or more models other than ensemble, e.g. neumf,gmf")
        for kind in kinds:
            model_class(kind)  # an unknown name is a UsageError naming the known ones

    def kinds(self) -> list[str]:
        """The member model names."""
        return [k.strip() for k in self.members.split(",") if k.strip()]


@register("ensemble")
class Ensemble(Recommender):
    """``sum_k w_k * prediction_k`` over fitted members, each with its own defaults.

    The members are fitted on train less a validation part (the one given, or a seeded
    held-out share as the gradient-trained models hold out) and stop early on it; the
    weights are non-negative least squares of the validation ratings on the members'
    validation predictions; when the validation part was held out of train here, the
    members' biases are then solved again on all of train. It costs the sum of its members'
    fits. The defaults (NeuMF and GMF, 4 seeds each: 8 fits) are neucf's most accurate
    rating predictions (figures: the benchmarks page).

    Examples:
        >>> model = Ensemble(members="gmf,mf", seeds=1)
        >>> model.config.kinds()
        ['gmf', 'mf']
    """

    config_class = EnsembleConfig
    fitted_by: ClassVar[str] = "members"
    can_fold_in: ClassVar[bool] = True  # when every member can (checked when folding in)

    def _fit(self, train, valid, options):
        everything = None
        if valid is None or len(valid) == 0:
            held = held_out_mask(len(train), TrainConfig(seed=self.seed))
            everything = (train.users, train.items, train.ratings)
            train, valid = train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))
        self.members_ = []
        for kind in self.config.kinds():
            for k in range(self.config.seeds):
                member = make_model(kind, seed=self.seed + k, unknown=self.unknown)
                member.fit(train, valid, device=options.device, progress=options.progress)
                self.members_.append(member)
        with warnings.catch_warnings():  # importing scipy.optimize adds a process-wide filter
            import scipy.optimize

        predictions = [m.predict_index(valid.users, valid.items, unknown="fallback") for m in self.members_]
        weights, _ = scipy.optimize.nnls(
            np.stack(predictions, axis=1).astype(np.float64), valid.ratings.astype(np.float64)
        )
        if weights.sum() == 0:  # no member explains validation better than zero: average them
            weights = np.full(len(self.members_), 1.0 / len(self.members_))
        self.weights_ = weights
        if everything is not None:
            # weighed on the held-out share, the members' biases are then solved on all of
            # train, as a model that held a share out itself does (TorchRecommender._refit_biases)
            for member in self.members_:
                if isinstance(member, TorchRecommender):
                    member._refit_biases(everything)

    def _predict_index(self, users, items):
        return sum(w * m._predict_index(users, items) for w, m in zip(self.weights_, self.members_)).astype(np.float32)

    def _fold_in(self, items, ratings):
        for member in self.members_:
            member._check_fold_in()
        return [m._fold_in(items, ratings) for m in self.members_]

    def _predict_folded(self, state, items):
        parts = [m._predict_folded(s, items) for m, s in zip(self.members_, state)]
        return sum(w * p for w, p in zip(self.weights_, parts)).astype(np.float32)

    def _state(self):
        return {"weights": torch.from_numpy(self.weights_), "members": [payload(m) for m in self.members_]}

    def _restore(self, state, device):
        self.weights_ = state["weights"].numpy()
        self.members_ = [from_payload(p, device) for p in state["members"]]
