"""A weighted average of several fitted models: seeds and kinds, weights fitted on validation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..errors import UsageError
from ..splits import held_out_mask
from .base import Recommender, parse_spec
from .persistence import from_payload, payload
from .registry import make_model, model_class, register
from .torch_estimator import TorchRecommender


@dataclass
class EnsembleConfig:
    """Which models an ensemble averages.

    Attributes:
        members: comma-separated member specifications, each a registered model name with
            optional parameters after colons (``gmf:factors=100``, ``neumf:factors=64:ids=false``);
            each is fitted ``seeds`` times, with its own defaults for what is not given.
        seeds: fits of each member, with seeds ``seed``, ``seed + 1``, ...

    The default, GMF at 100 and 200 units and item-based AutoRec, two seeds each (6 fits):
    networks larger than GMF's single default (a little more accurate alone, at one and a
    half to two times the cost), and AutoRec, less accurate alone but wrong in other places,
    which is what a blend gains from; a NeuMF member adds nothing to them ("Why the defaults"
    in the documentation has the measurements).

    Examples:
        >>> EnsembleConfig(members="gmf:factors=64,mf").specs()
        [('gmf', {'factors': 64}), ('mf', {})]
    """

    members: str = field(
        default="gmf:factors=100,gmf:factors=200,autorec",
        metadata={"help": "Models an ensemble averages: name[:param=value...], comma-separated."},
    )
    seeds: int = field(default=2, metadata={"help": "Fits of each ensemble member, with consecutive seeds."})

    def __post_init__(self):
        if self.seeds < 1:
            raise UsageError(f"seeds must be >= 1, got {self.seeds}")
        specs = self.specs()
        if not specs or any(kind == "ensemble" for kind, _ in specs):
            raise UsageError("members must name one or more models other than ensemble, e.g. neumf,gmf:factors=64")
        for kind, params in specs:
            # an unknown name or parameter is a UsageError naming the known ones
            model_class(kind).check_params(params)

    def specs(self) -> list[tuple[str, dict]]:
        """Each member's model name and its parameters."""
        return [parse_spec(spec) for spec in filter(None, (s.strip() for s in self.members.split(",")))]


@register("ensemble")
class Ensemble(Recommender):
    """``sum_k w_k * prediction_k`` over fitted members, each with its own defaults.

    The members are fitted on train less a validation part (the one given, or a seeded
    held-out share as the gradient-trained models hold out) and stop early on it; the
    weights are non-negative least squares of the validation ratings on the members'
    validation predictions; when the validation part was held out of train here, the
    members' biases are then solved again on all of train. It costs the sum of its members'
    fits. Its defaults (see :class:`EnsembleConfig`) are neucf's most accurate rating
    predictions (figures: the benchmarks page).

    Examples:
        >>> model = Ensemble(members="gmf:factors=16,mf", seeds=1)
        >>> [kind for kind, _ in model.config.specs()]
        ['gmf', 'mf']
    """

    config_class = EnsembleConfig
    fitted_by: ClassVar[str] = "members"

    def memory_needed(self, n_users, n_items, n_ratings):
        """The largest member's (members are fitted one at a time)."""
        return max(
            model_class(kind)(**params).memory_needed(n_users, n_items, n_ratings)
            for kind, params in self.config.specs()
        )

    can_fold_in: ClassVar[bool] = True  # when every member can (checked when folding in)

    def _fit(self, train, valid, options):
        everything = None
        if valid is None or len(valid) == 0:
            held = held_out_mask(len(train), self.seed)
            everything = (train.users, train.items, train.ratings)
            train, valid = train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))
        self.members_ = []
        for kind, params in self.config.specs():
            for k in range(self.config.seeds):
                member = make_model(kind, seed=self.seed + k, unknown=self.unknown, **params)
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

    uses_attributes: ClassVar[bool] = True  # through its members that read them

    def _fit_attributes(self, train):
        """The members read the attributes themselves; the ensemble keeps the id maps and the
        catalogue in step with theirs."""
        self._attribute_catalogue(train)

    def attribute_sides(self) -> tuple[str, ...]:
        """The sides every member that reads attributes scores from them."""
        readers = (
            [m for m in self.members_ if m.attribute_sides()] if getattr(self, "catalogue_", None) is not None else []
        )
        if not readers:
            return ()
        return tuple(s for s in ("user", "item") if all(s in m.attribute_sides() for m in readers))

    def _catalogue_grew(self, side, table, ids):
        super()._catalogue_grew(side, table, ids)
        for member in self.members_:
            if member.attribute_sides():
                member._extend_ids(side, table)
                member._catalogue_grew(side, table, ids)

    def _blend(self, score) -> np.ndarray:
        """``score(member, index)`` of the members that read attributes, weighed, their weights
        scaled up to the ensemble's total (equal where they all weigh 0)."""
        readers = [(w, k, m) for k, (w, m) in enumerate(zip(self.weights_, self.members_)) if m.attribute_sides()]
        total = sum(w for w, _, _ in readers)
        if total <= 0:
            return (sum(score(m, k) for _, k, m in readers) / len(readers)).astype(np.float32)
        return (self.weights_.sum() / total * sum(w * score(m, k) for w, k, m in readers)).astype(np.float32)

    def _cold_scores(self, u, i, user_known, item_known):
        return self._blend(lambda m, _: m._cold_scores(u, i, user_known, item_known))

    def _folded_cold(self, state, items, row):
        return self._blend(lambda m, k: m._folded_cold(state[k], items, row))

    def _new_user_scores(self, features, items):
        return self._blend(lambda m, _: m._new_user_scores(features, items))

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
