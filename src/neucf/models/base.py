"""The estimator every model is: a *scorer* of (user, item) pairs that fits, predicts and
folds new users in. Lists are made over any scorer by :mod:`neucf.lists`, judged by
:mod:`neucf.evaluation`, and written and read by :mod:`neucf.models.persistence`; the
methods of :class:`Recommender` that do those things (``recommend``, ``evaluate``,
``save``...) hand over to them, so that a model is used as one object.

A model class states what it can do through class attributes, which the rest of neucf
reads instead of testing names:

- ``tasks``: ``("rating",)`` (predicts ratings; scores are predicted ratings, clipped to the
  scale), ``("ranking",)`` (scores items for top-N lists, from ratings or interactions) or
  both; an instance does the one it was made for (``task``);
- ``config_class``: the typed dataclass of its architecture parameters (:class:`NoParameters`
  for a model without any);
- ``fitted_by``: ``"closed_form"``, ``"gradient"`` (trained by :class:`~neucf.training.Trainer`,
  takes :class:`~neucf.training.TrainConfig`'s parameters too) or ``"members"`` (fits other
  models, holding out a validation share as the gradient-trained ones do);
- ``can_fold_in``: whether a user unseen in training can be scored from their history alone;
- ``can_fold_in_items``: whether an item unseen in training can be scored from its first
  interactions alone (:meth:`Recommender.add_items` with ``interactions``);
- ``uses_weights``: whether it reads the weights of interactions (counts of plays);
- ``uses_attributes``: whether it scores users and items from their attributes (genres,
  age...) when the data has them (:mod:`neucf.models.attribute_towers`): ids without training
  ratings are then scored from their attributes, by any prediction or list;
- :meth:`Recommender.search_space`: its tuning space; :meth:`Recommender.unregularised`: the
  parameters that switch its regularisation off (for ``diagnose overfit``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..datasets import Ratings
from ..datasets.ratings import id_text, lookup_ids, show_id
from ..errors import DataError, UsageError
from ..training import FitOptions, History
from .biases import BiasFit, bias_regularisation, fit_biases

log = logging.getLogger(__name__)

__all__ = ["BiasFit", "NoParameters", "Recommender", "bias_regularisation", "fit_biases", "parse_setting", "parse_spec"]

#: what a model can be made for: predicting ratings, or ranking items for top-N lists
TASKS = ("rating", "ranking")


@dataclass(frozen=True)
class NoParameters:
    """The config of a model that has no parameters.

    Examples:
        >>> dataclasses.fields(NoParameters())
        ()
    """


def parse_setting(text: str) -> tuple[str, object]:
    """A ``key=value`` setting as written on a command line or in a member list, its value
    read as true/false, a whole number, a number, else text (a model's :meth:`Recommender.
    check_params` then checks it against the parameter's type).

    Examples:
        >>> parse_setting("factors=64"), parse_setting("ids=false"), parse_setting("lr=1e-3")
        (('factors', 64), ('ids', False), ('lr', 0.001))
    """
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise UsageError(f"{text!r}: write a setting as key=value, e.g. factors=64")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def parse_spec(spec: str) -> tuple[str, dict]:
    """A model named with its parameters, ``name[:key=value...]`` (an ensemble's member, a
    model of ``neucf compare``): the name and the parameters, read by :func:`parse_setting`.

    Examples:
        >>> parse_spec("gmf:factors=64:lr=0.01"), parse_spec(" ease ")
        (('gmf', {'factors': 64, 'lr': 0.01}), ('ease', {}))
    """
    name, *settings = spec.split(":")
    try:
        params = dict(parse_setting(setting) for setting in settings)
    except UsageError:
        raise UsageError(f"{spec!r}: write a model's parameters as name:key=value, e.g. gmf:factors=64") from None
    return name.strip(), params


def _typed(name: str, value, kind):
    """``value`` checked against a config field's type (annotations are strings here)."""
    kind = getattr(kind, "__name__", kind)
    if isinstance(kind, str) and kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    is_bool = isinstance(value, (bool, np.bool_))
    if kind == "bool" and is_bool:
        return bool(value)
    if kind == "int" and isinstance(value, (int, np.integer)) and not is_bool:
        return int(value)
    number = isinstance(value, (int, float, np.integer, np.floating)) and not is_bool
    if kind == "float" and number and np.isfinite(value):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind not in ("bool", "int", "float", "str"):
        return value
    wanted = {"bool": "true or false", "int": "a whole number", "float": "a finite number", "str": "text"}[kind]
    raise UsageError(f"parameter {name} must be {wanted}, got {value!r}")


class Recommender:
    """Base class of neucf's models. Subclasses implement ``_fit`` and ``_predict_index``.

    ``unknown`` says what ``predict`` does with a user or item that has no training rating:
    ``"error"`` (default) raises a clear :class:`DataError`; ``"fallback"`` predicts the
    regularised baseline ``mean + b_u + b_i`` with the unknown side's bias taken as 0 (the
    global mean when both are unknown). :meth:`evaluate` always uses the fallback and says how
    often it was needed. ``seed`` seeds everything random in fitting. Other keyword arguments
    are the model's parameters; one the model does not take is an error naming those it does.

    Examples:
        >>> from neucf.models import Biases
        >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
        >>> model = Biases().fit(r)
        >>> model.predict([1], [2]).shape
        (1,)
        >>> Biases(factors=3)
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: the bias model does not take factors; it takes reg_user, reg_item, n_iter
    """

    #: the ``--model`` name; set by :func:`~neucf.models.registry.register`
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = NoParameters
    fitted_by: ClassVar[str] = "closed_form"
    can_fold_in: ClassVar[bool] = False
    can_fold_in_items: ClassVar[bool] = False
    #: what the class can be made for, its first the default (see the module docstring)
    tasks: ClassVar[tuple[str, ...]] = ("rating",)
    #: whether fitting on interactions reads their weights (counts of plays); else each counts once
    uses_weights: ClassVar[bool] = False
    #: whether it scores users and items from their attributes (see the module docstring)
    uses_attributes: ClassVar[bool] = False

    def __init__(self, unknown: str = "error", seed: int = 0, task: str | None = None, **params):
        if unknown not in ("error", "fallback"):
            raise UsageError(f"unknown must be 'error' or 'fallback', not {unknown!r}")
        self.unknown = unknown
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UsageError(f"seed must be a whole number >= 0, got {seed!r}")
        self.seed = int(seed)
        task = self.tasks[0] if task is None else task
        if task not in self.tasks:
            raise UsageError(f"the {self.name or type(self).__name__} model is not made for the {task} task")
        self.task = task
        self._configure(self.check_params(params))
        self.history: History | None = None
        self.implicit = False

    # ---- what the class can do -----------------------------------------------------------
    @classmethod
    def parameters(cls) -> dict[str, dataclasses.Field]:
        """The parameters this model takes, by name (the fields of its config dataclasses).

        Examples:
            >>> from neucf.models import Biases
            >>> list(Biases.parameters())
            ['reg_user', 'reg_item', 'n_iter']
        """
        return {f.name: f for f in dataclasses.fields(cls.config_class)}

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """The parameters, checked: a :class:`UsageError` names any this model does not take
        and any value of the wrong type (a whole number, a finite number, true/false, text);
        whole numbers given for number parameters become floats."""
        accepted = cls.parameters()
        bad = [k for k in params if k not in accepted]
        if bad:
            takes = ", ".join(accepted) if accepted else "no parameters"
            raise UsageError(f"the {cls.name or cls.__name__} model does not take {', '.join(bad)}; it takes {takes}")
        return {k: _typed(k, v, accepted[k].type) for k, v in params.items()}

    @classmethod
    def search_space(cls, trial) -> dict:
        """Parameters drawn from an Optuna ``trial``; empty when there is nothing to tune."""
        return {}

    @classmethod
    def unregularised(cls) -> dict:
        """Parameters that switch every regulariser off (``diagnose overfit`` trains with them)."""
        return {}

    def _configure(self, params: dict) -> None:
        """Build the typed config(s) from checked parameters (subclasses with several extend)."""
        self.config = self.config_class(**params)

    def get_params(self) -> dict:
        """The model's parameters as plain values (what ``save`` stores and ``--config`` takes)."""
        return dataclasses.asdict(self.config)

    # ---- fitting -------------------------------------------------------------------------
    def fit(
        self,
        train: Ratings,
        valid: Ratings | None = None,
        *,
        device: str = "auto",
        progress: bool = False,
        callbacks=(),
    ) -> Recommender:
        """Learn from ``train``; ``valid`` (same id maps, e.g. from one split) guides early stopping.

        ``device``, ``progress`` and ``callbacks`` (called with each epoch's
        :class:`~neucf.training.EpochStats`) are run-time options: they change how fitting
        runs, never what is learnt, and are not saved with the model.
        """
        if len(train) == 0:
            raise DataError("cannot fit on an empty training set")
        if train.implicit and self.task == "rating":
            raise UsageError(
                f"the data holds interactions without ratings, and the {self.name} model predicts ratings: "
                "rank items instead (--task ranking)"
            )
        self.check_data(train)
        self.check_size(train)
        options = FitOptions(device=device, progress=progress, callbacks=tuple(callbacks))
        self.user_ids, self.item_ids = train.user_ids, train.item_ids
        self.item_titles = train.item_titles
        self.scale = train.scale
        self.implicit = train.implicit
        self.trained_sizes_, self.item_folds_ = None, {}  # what a model grew by after its last fit
        self._remember_training(train.users, train.items, train.ratings)
        if self.task == "rating":
            self.bias_fit_ = BiasFit.of(train, *self._bias_settings())
            fit = self.bias_fit_
            self.mean_, self.user_bias_, self.item_bias_ = fit.mean, fit.user_bias, fit.item_bias
        else:
            # a ranking model's fallback for unknown users and items: the items' popularity
            # (the share of users who have them), so that a stranger gets the popular list
            self.mean_ = 0.0
            self.user_bias_ = np.zeros(train.n_users)
            self.item_bias_ = np.bincount(train.items, minlength=train.n_items) / max(train.n_users, 1)
        self._fit(train, valid, options)
        self.catalogue_ = None
        if self.uses_attributes and (train.item_attributes is not None or train.user_attributes is not None):
            self._fit_attributes(train)
        return self

    # ---- attributes: the hooks of the models that read them (uses_attributes) ------------
    def _fit_attributes(self, train: Ratings) -> None:
        """Learn to score the ids of ``train``'s attribute tables that have no training data
        (:class:`~neucf.models.attribute_towers.TowerScoring`,
        :class:`~neucf.models.attribute_maps.MapScoring`)."""
        raise NotImplementedError

    def _attribute_state(self) -> dict:
        """What scores from attributes, as plain values and tensors (for a model file)."""
        return {}

    def _restore_attributes(self, state: dict) -> None:
        """Rebuild what :meth:`_attribute_state` wrote."""

    def _cold_scores(self, u: np.ndarray, i: np.ndarray, user_known: np.ndarray, item_known: np.ndarray) -> np.ndarray:
        """Scores of pairs (indices) whose user or item (or both: not ``user_known``, not
        ``item_known``) is known only by attributes."""
        raise NotImplementedError

    def _new_user_scores(self, features, items: np.ndarray) -> np.ndarray:
        """Scores of a user known only by attributes (a features row) for ``items``, unclipped."""
        raise NotImplementedError

    def _attribute_catalogue(self, train: Ratings) -> None:
        """Append the ids of ``train``'s attribute tables that have no training data to the id
        maps (catalogue entries) and encode every id's attributes (``catalogue_``)."""
        from .attribute_towers import Catalogue

        self.trained_sizes_ = (len(self.user_ids), len(self.item_ids))
        self._extend_ids("user", train.user_attributes)
        self._extend_ids("item", train.item_attributes)
        self.catalogue_ = Catalogue.of(self.user_ids, self.item_ids, train.user_attributes, train.item_attributes)

    def _trained_ids(self) -> dict:
        """The id maps as the model was trained on them (``user_ids``, ``item_ids``): without
        the ids that joined later from attributes (appended, see :meth:`_extend_ids`), which a
        network has no rows for."""
        n_users, n_items = getattr(self, "trained_sizes_", None) or (len(self.user_ids), len(self.item_ids))
        return {"user_ids": self.user_ids[:n_users], "item_ids": self.item_ids[:n_items]}

    def _extend_ids(self, side: str, table) -> np.ndarray:
        """Append the ids of ``table`` (attributes) that the ``side``'s id map lacks, as ids
        without training data; returns them."""
        if table is None:
            return np.zeros(0)
        ids = self.user_ids if side == "user" else self.item_ids
        new = table.ids[lookup_ids(ids, table.ids, side, missing_ok=True) < 0]
        if not len(new):
            return new
        if ids.dtype == new.dtype:
            joined = np.concatenate([ids, new])
        else:  # numbers and text: the map becomes text, which matches ids as written (lookup_ids)
            joined = np.array([id_text(x) for x in np.concatenate([ids, new])], dtype=object)
        zeros = np.zeros(len(new))
        if side == "user":
            self.user_ids, self._by_user, self._rows_by_user = joined, None, None
            self.known_users = np.concatenate([self.known_users, zeros.astype(bool)])
            self.user_bias_ = np.concatenate([self.user_bias_, zeros]).astype(self.user_bias_.dtype)
        else:
            self.item_ids = joined
            self.known_items = np.concatenate([self.known_items, zeros.astype(bool)])
            self.item_bias_ = np.concatenate([self.item_bias_, zeros]).astype(self.item_bias_.dtype)
            if self.item_titles is not None or table.titles is not None:
                titles = self.item_titles if self.item_titles is not None else np.full(len(ids), None, dtype=object)
                extra = [None if table.titles is None else table.titles.get(x) for x in new]
                self.item_titles = np.concatenate([titles, np.array(extra, dtype=object)])
        log.info("%d %s(s) without training data joined the catalogue", len(new), side)
        return new

    def attribute_sides(self) -> tuple[str, ...]:
        """The sides (``"user"``, ``"item"``) this fitted model scores from attributes.

        Examples:
            >>> from neucf.models import Biases
            >>> Biases().fit(Ratings.from_arrays([1], [1], [4.0])).attribute_sides()
            ()
        """
        return ()

    def _cold_known(self, side: str, index: np.ndarray) -> np.ndarray:
        """Which ids (indices of the map) of ``side`` this model scores without training data:
        from their attributes, or (items) from interactions folded in after training."""
        known = np.zeros(len(index), bool)
        if side in self.attribute_sides():
            known |= self.catalogue_.has[side][index]
        if side == "item":
            known |= self._folded_items(index)
        return known

    def _folded_items(self, index: np.ndarray) -> np.ndarray:
        """Which items (indices of the map) are folded in from their interactions."""
        folds = self._item_folds()
        return np.zeros(len(index), bool) if folds is None else folds[0][index] >= 0

    def _item_folds(self):
        """The items folded in from their interactions (:meth:`add_items`): (for every item of
        the map, its row in the folds or -1; the folds, as the model keeps them), or None;
        made again when the folds change."""
        folds = getattr(self, "item_folds_", None)
        if not folds:
            return None
        kept = getattr(self, "_fold_rows", None)
        if kept is None or kept[0] is not folds or len(kept[1]) != len(self.item_ids):
            rows = np.full(len(self.item_ids), -1, np.int64)
            index = np.fromiter(folds, np.int64, len(folds))
            rows[index] = np.arange(len(index))
            kept = self._fold_rows = (folds, rows, [folds[i] for i in index.tolist()])
        return kept[1:]

    def add_items(self, attributes=None, interactions=None) -> np.ndarray:
        """Items added after training join the catalogue without retraining. Returns the ids
        added or folded in.

        ``attributes`` (an :class:`~neucf.attributes.Attributes` table with the columns the
        training table had), for a model that reads item attributes: the items are scored and
        listed from them. Ids the model already has are left as they are.

        ``interactions`` (a table with the columns user, item and rating), for a model that
        folds items in (``can_fold_in_items``): each item it names that the model was not
        trained on is scored and listed from those interactions, as a new user is from their
        history. Only users the model was trained on count (an item's inputs are its column
        of trained users); the table replaces whatever the model held of those items before,
        and an item left with no usable row is folded in no more. Interactions win over
        attributes for an item that has both.

        Examples:
            >>> from neucf.attributes import read_attributes
            >>> from neucf.models import GMF
            >>> r = Ratings.from_arrays([1, 1, 2, 2], [1, 2, 1, 2], [5.0, 3.0, 4.0, 2.0])
            >>> r = r.with_attributes(read_attributes(b"item,genres\\n1,Drama\\n2,Comedy\\n"))
            >>> model = GMF(factors=2, epochs=1).fit(r)
            >>> model.add_items(read_attributes(b"item,genres\\n3,Drama\\n")).tolist()
            [3]
            >>> model.predict([1], [3]).shape
            (1,)
            >>> model.add_items(interactions=pd.DataFrame({"user": [1, 2], "item": [4, 4], "rating": [5.0, 4.0]})).tolist()
            [4]
            >>> model.predict([2], [4]).shape
            (1,)
        """
        self._check_fitted()
        added = self._add("item", attributes) if attributes is not None else np.zeros(0)
        if interactions is None:
            return added
        folded = self._fold_items(interactions)
        return np.concatenate([added, folded[~np.isin(folded, added)]]) if len(added) else folded

    def _fold_items(self, interactions: pd.DataFrame, named=None) -> np.ndarray:
        """Fold in the items of ``interactions`` the model was not trained on (see
        :meth:`add_items`); returns their ids. ``named`` (ids): the items whose folds the
        table replaces, those without a row in it included (default: the table's items)."""
        if not self.folds_items():
            raise UsageError(
                f"the {self.name} model cannot fold new items in from their interactions: retrain it with them "
                "(neucf models says which models can)"
            )
        missing = [c for c in ("user", "item") if c not in interactions]
        if self.task == "rating" and "rating" not in interactions:
            missing.append("rating")
        if missing:
            raise UsageError(f"interactions need the columns user, item and rating (missing: {', '.join(missing)})")
        given = interactions["rating"] if "rating" in interactions else pd.Series(np.nan, index=interactions.index)
        ratings = pd.to_numeric(given, errors="coerce").to_numpy(np.float64)
        low, high = self.scale if self.scale is not None else (-np.inf, np.inf)
        # a ranking model takes interactions without ratings (NaN); a rating model needs each one
        bad = (ratings < low) | (ratings > high) | (np.isnan(ratings) & (self.task == "rating" or given.notna()))
        if self.implicit:
            bad = given.notna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            wanted = "no rating (the model learnt from interactions)" if self.implicit else (
                f"a rating within the scale {low:g}..{high:g}")  # fmt: skip
            raise DataError(
                f"interactions: user {show_id(interactions['user'].iloc[row])} has item "
                f"{show_id(interactions['item'].iloc[row])} with {given.iloc[row]!r}; this model takes {wanted}"
            )
        items = interactions["item"].to_numpy()
        index = lookup_ids(self.item_ids, items, "item", missing_ok=True)
        users = lookup_ids(self.user_ids, interactions["user"].to_numpy(), "user", missing_ok=True)
        usable = users >= 0
        usable[usable] = self.known_users[users[usable]]
        usable &= (index < 0) | ~self.known_items[np.maximum(index, 0)]  # a trained item keeps what it learnt
        new = pd.unique(items[usable & (index < 0)])  # only an item it folds in joins the map
        if len(new):
            if getattr(self, "trained_sizes_", None) is None:  # the network keeps the size it was trained at
                self.trained_sizes_ = (len(self.user_ids), len(self.item_ids))
            self._extend_ids("item", SimpleNamespace(ids=np.asarray(new), titles=None))
            if getattr(self, "catalogue_", None) is not None:
                self.catalogue_.pad("item", len(new))
            index = lookup_ids(self.item_ids, items, "item", missing_ok=True)
        if named is not None:
            named = lookup_ids(self.item_ids, np.asarray(named, dtype=object), "item", missing_ok=True)
        folds = dict(getattr(self, "item_folds_", None) or {})
        for i in (index[index >= 0] if named is None else named[named >= 0]).tolist():
            folds.pop(i, None)
        rows = np.flatnonzero(usable)
        rows = rows[np.argsort(index[rows], kind="stable")]
        done, starts = np.unique(index[rows], return_index=True)
        for i, part in zip(done.tolist(), np.split(rows, starts[1:])):
            folds[i] = self._fold_in_item(users[part], ratings[part])
        self.item_folds_ = folds
        log.info("%d item(s) folded in from their interactions", len(done))
        return self.item_ids[done]

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray):
        """Model-specific state of an item given as a column (trained user indices, ratings;
        NaN: an interaction without one)."""
        raise NotImplementedError

    def folds_items(self) -> bool:
        """Whether this fitted model folds new items in from their interactions
        (``can_fold_in_items``; a model made of others asks them).

        Examples:
            >>> from neucf.models import Biases
            >>> Biases().fit(Ratings.from_arrays([1], [1], [4.0])).folds_items()
            False
        """
        return self.can_fold_in_items

    def add_users(self, attributes) -> np.ndarray:
        """Users who signed up after training, known by their attributes (an
        :class:`~neucf.attributes.Attributes` table with the columns the training table had),
        scored and given lists from them without retraining. Returns the ids added."""
        self._check_fitted()
        return self._add("user", attributes)

    def _add(self, side: str, attributes) -> np.ndarray:
        if side not in self.attribute_sides():
            raise UsageError(
                f"this {self.name} model scores no {side} from attributes: fit a model that reads them "
                f"(neucf models says which) on data with {side} attributes"
            )
        new = self._extend_ids(side, attributes)
        self._catalogue_grew(side, attributes, new)
        return new

    def _catalogue_grew(self, side: str, table, ids) -> None:
        """Encode the attributes of ``ids``, just appended to the id map."""
        self.catalogue_.extend(side, table, ids)

    def _folded_cold(self, state, items: np.ndarray, row) -> np.ndarray:
        """A folded-in user's scores (state of :meth:`_fold_in`, from ``row``: item indices
        and ratings) for items known only by attributes; models that read attributes give it."""
        raise NotImplementedError

    def scorable(self, side: str) -> np.ndarray:
        """Which users or items (``side``; a mask over its id map) this model scores: those
        with training data, and those it scores from their attributes.

        Examples:
            >>> from neucf.models import Biases
            >>> Biases().fit(Ratings.from_arrays([1], [1], [4.0])).scorable("user").tolist()
            [True]
        """
        known = self.known_users if side == "user" else self.known_items
        return known | self._cold_known(side, np.arange(len(known)))

    def listable(self) -> np.ndarray:
        """Which items (a mask over the id map) a list may hold: those this model scores
        (:meth:`scorable`).

        Examples:
            >>> from neucf.models import Biases
            >>> Biases().fit(Ratings.from_arrays([1], [1], [4.0])).listable().tolist()
            [True]
        """
        return self.scorable("item")

    def _user_scores(self, u: int, items: np.ndarray, unseen: bool = False) -> np.ndarray:
        """:meth:`_score_user` for items a list may hold and a user known by training data
        or by attributes (the pairs it cannot take are scored from attributes)."""
        warm = self.known_items[items] & bool(self.known_users[u])
        if warm.all():
            return self._score_user(u, items, unseen)
        out = np.empty(len(items), np.float32)
        if warm.any():
            out[warm] = self._score_user(u, items[warm], unseen)
        out[~warm] = self.predict_index(np.full(int((~warm).sum()), u), items[~warm])
        return out

    def _users_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """:meth:`_score_users` for known users and items a list may hold."""
        warm = self.known_items[items]
        if warm.all():
            return self._score_users(users, items)
        out = np.empty((len(users), len(items)), np.float32)
        out[:, warm] = self._score_users(users, items[warm])
        cold = items[~warm]
        scores = self.predict_index(np.repeat(users, len(cold)), np.tile(cold, len(users)))
        out[:, ~warm] = scores.reshape(len(users), len(cold))
        return out

    def check_data(self, train: Ratings) -> None:
        """Refuse (:class:`UsageError`), before any work, settings that cannot apply to
        ``train`` (a threshold outside its rating scale); here nothing."""

    def memory_needed(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Bytes a fit on data of this size takes at its peak, by this model's estimate. Here:
        the copies of the ratings a fit makes, and every user's and item's learnt vectors (the
        config's ``factors``, ``mlp_factors`` and ``hidden`` units) four times over (weights,
        gradients, Adam's two moments); models whose memory grows otherwise add to it.

        Examples:
            >>> from neucf.models import Biases
            >>> Biases().memory_needed(1000, 100, 10_000)
            675200
        """
        units = sum(int(getattr(self.config, name, 0) or 0) for name in ("factors", "mlp_factors", "hidden"))
        return 64 * n_ratings + 16 * (n_users + n_items) * (units + 2)

    def check_size(self, train: Ratings) -> None:
        """Refuse (:class:`UsageError`), before any work, a fit on data of ``train``'s size that
        :meth:`memory_needed` says takes more than half of the memory this machine allows
        (:func:`~neucf.models.memory.check_memory`). :meth:`fit` checks first; ``neucf compare``
        checks every model before it fits any."""
        from .memory import check_memory

        needed = self.memory_needed(train.n_users, train.n_items, len(train))
        check_memory(needed, f"the {self.name or type(self).__name__} model on {len(train):,} ratings", self.smaller)

    #: what to do when a fit would not fit in memory (the end of :meth:`check_size`'s message)
    smaller: ClassVar[str] = "give fewer units (--factors) or use less data"

    def _remember_training(self, users: np.ndarray, items: np.ndarray, values: np.ndarray) -> None:
        """Keep the training ratings and which users and items they cover (the known ones)."""
        self.train_ = (users, items, values)
        self._by_user = self._rows_by_user = None
        self.known_users = np.bincount(users, minlength=len(self.user_ids)) > 0
        self.known_items = np.bincount(items, minlength=len(self.item_ids)) > 0

    def _bias_settings(self) -> tuple:
        """``(reg_user, reg_item, n_iter)`` of the bias baseline used for fallbacks (shrinkage
        estimated from the data, see :func:`bias_regularisation`)."""
        return None, None, 10

    def _fit(self, train: Ratings, valid: Ratings | None, options: FitOptions) -> None:
        raise NotImplementedError

    def _predict_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self):
        if not hasattr(self, "train_"):
            raise UsageError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    # ---- predicting ----------------------------------------------------------------------
    def predict_index(self, users, items, unknown: str | None = None) -> np.ndarray:
        """Predicted ratings for dense (user, item) indices, clipped to the rating scale."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise UsageError(f"users and items must have the same length ({users.shape} vs {items.shape})")
        if len(users) and (
            users.min() < 0 or users.max() >= len(self.user_ids) or items.min() < 0 or items.max() >= len(self.item_ids)
        ):
            raise DataError("user or item index out of range")
        return self._predict_mapped(users, items, unknown or self.unknown)[0]

    def predict(self, users, items, history=None) -> np.ndarray:
        """Predicted ratings for raw user and item ids (the ids of the data file).

        ``history`` (a DataFrame with columns user, item, rating, raw ids) folds users in from
        those ratings: users the model never saw, or known users with extra ratings added to
        their row. Users of the pairs that are not in it are predicted as usual.
        """
        self._check_fitted()
        if history is not None:
            return self._predict_with_history(users, items, history)
        fallback = self.unknown == "fallback"
        u = lookup_ids(self.user_ids, users, "user", missing_ok=fallback)
        i = lookup_ids(self.item_ids, items, "item", missing_ok=fallback)
        if u.shape != i.shape:
            raise UsageError(f"users and items must have the same length ({u.shape} vs {i.shape})")
        return self._predict_mapped(u, i, self.unknown)[0]

    def _predict_mapped(self, u: np.ndarray, i: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for indices (-1 = not in the id map) and the mask of pairs the model
        scored (from training data, or attributes); the others got the baseline."""
        in_map = (u >= 0) & (i >= 0)
        uc, ic = np.maximum(u, 0), np.maximum(i, 0)
        user_known = (u >= 0) & self.known_users[uc]
        item_known = (i >= 0) & self.known_items[ic]
        known = user_known & item_known & in_map
        # a side without training ratings but with attributes (or an item folded in) is scored from them
        user_ok = user_known | ((u >= 0) & self._cold_known("user", uc))
        item_ok = item_known | ((i >= 0) & self._cold_known("item", ic))
        cold = user_ok & item_ok & ~known
        if policy == "error" and not (known | cold).all():
            bad = int(np.argmin(known | cold))
            if not user_ok[bad]:
                kind, ids, index = "user", self.user_ids, u[bad]
            else:
                kind, ids, index = "item", self.item_ids, i[bad]
            raise DataError(
                f"{kind} {show_id(ids[index])} has no training rating; pass unknown='fallback' "
                "(CLI: --fallback) to predict the baseline instead"
            )
        # the baseline: mean + b_u + b_i, an unknown side contributing 0
        out = (
            self.mean_ + np.where(user_known, self.user_bias_[uc], 0.0) + np.where(item_known, self.item_bias_[ic], 0.0)
        )
        out = out.astype(np.float32)
        if known.any():
            out[known] = self._predict_index(u[known], i[known])
        if cold.any():
            out[cold] = self._cold_scores(u[cold], i[cold], user_known[cold], item_known[cold])
        return (np.clip(out, *self.scale) if self.task == "rating" else out), known | cold

    def _rated_by(self, u: int) -> np.ndarray:
        """The items user ``u`` rated in training (indices, ascending), from a by-user index of
        the training ratings built on first use, so that a server's lookups cost no scan."""
        if getattr(self, "_by_user", None) is None:
            order, starts = _by_user(self.train_[0], self.train_[1], len(self.user_ids))
            self._by_user = (starts, self.train_[1][order].astype(np.int64))
        starts, items = self._by_user
        return items[starts[u] : starts[u + 1]]

    def warm_up(self) -> None:
        """Build now what a first list would build while its request waits: the by-user
        indexes of the training data (:meth:`_rated_by`, and :meth:`_training_row` for a
        model that folds users in) and one known user's list, the scoring path's first run.
        A server calls it before a run answers (at start, and off the request path before a
        swap), so that its first request is as fast as the rest.

        Examples:
            >>> from neucf.models import Biases
            >>> model = Biases().fit(Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0]))
            >>> model.warm_up()
            >>> model._by_user is not None
            True
        """
        self._check_fitted()
        known = np.flatnonzero(self.known_users)
        if not len(known):
            return
        if self.can_fold_in:
            self._training_row(int(known[0]))
        self.recommend_index(int(known[0]), k=1)

    def _unseen(self, seen: np.ndarray) -> np.ndarray:
        """The items a list may hold (:meth:`listable`) not in ``seen`` (indices, ascending)."""
        keep = self.listable()
        keep[seen] = False
        return np.flatnonzero(keep)

    def _score_user(self, u: int, items: np.ndarray, unseen: bool = False) -> np.ndarray:
        """Predictions of known user ``u`` for known ``items`` (clipped to the scale);
        ``unseen`` promises that ``u`` rated none of them in training (models may use a
        faster path then)."""
        return self.predict_index(np.full(len(items), u), items)

    def _score_users(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of known ``users`` x known ``items``, a (len(users), len(items)) array (every
        user's list at once; models with a faster whole-matrix product override it)."""
        scores = self.predict_index(np.repeat(users, len(items)), np.tile(items, len(users)))
        return scores.reshape(len(users), len(items))

    def _sparse_scores(self, users: np.ndarray) -> sp.csr_matrix | None:
        """Scores of known ``users`` x every item as a sparse matrix whose missing entries are
        exactly 0, for models whose lists rank such scores (:func:`neucf.lists.top_sparse`
        then works in proportion to the non-zeros, not to the catalogue); None: this model's
        scores are dense."""
        return None

    def _rank(self, predictions: np.ndarray, items: np.ndarray) -> np.ndarray:
        """What top-k lists are sorted by (highest first): the predicted ratings, unless a
        model ranks by something else (``pop``: the number of training ratings)."""
        return predictions

    # ---- new users (fold-in) ------------------------------------------------------------
    def _fold_in(self, items: np.ndarray, ratings: np.ndarray):
        """Model-specific state of a user given as a rating row (item indices, ratings)."""
        raise NotImplementedError

    def _predict_folded(self, state, items: np.ndarray) -> np.ndarray:
        """Predictions for item indices from a folded-in user's state."""
        raise NotImplementedError

    def _model_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ratings the model reads users from: its training ratings (subclasses that
        hold some back, as for early stopping, narrow it)."""
        return self.train_

    def _training_row(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """User ``u``'s row as the model reads it (item indices in order, ratings), from a
        by-user index of :meth:`_model_inputs` built on first use (a server's fold-in of a
        known user costs no scan of the training data)."""
        users, items, values = self._model_inputs()
        cached = getattr(self, "_rows_by_user", None)
        if cached is None or cached[0] is not users:  # made again when the inputs change
            order, starts = _by_user(users, items, len(self.user_ids))
            cached = self._rows_by_user = (users, starts, items[order].astype(np.int64), values[order])
        _, starts, items, values = cached
        return items[starts[u] : starts[u + 1]], values[starts[u] : starts[u + 1]]

    def _check_fold_in(self) -> None:
        if not self.can_fold_in:
            raise UsageError(f"the {self.name} model cannot fold in new users: retrain it with their ratings")

    def _known_user(self, user) -> int | None:
        if user is None:
            return None
        u = int(lookup_ids(self.user_ids, [user], "user", missing_ok=True)[0])
        return u if u >= 0 and self.known_users[u] else None

    def _merged_row(self, known: int | None, items: np.ndarray, ratings: np.ndarray):
        """A known user's training row with the extra ratings added (an extra rating of an item
        already in the row replaces it), or the history alone for a new user."""
        if known is None:
            return items, ratings
        own_items, own_ratings = self._training_row(known)
        keep = ~np.isin(own_items, items)
        merged_items = np.concatenate([own_items[keep], items])
        order = np.argsort(merged_items, kind="stable")
        return merged_items[order], np.concatenate([own_ratings[keep], ratings])[order]

    def _folded_scores(self, row, items: np.ndarray, user) -> np.ndarray:
        """Predictions for ``items`` of a user given by their rating row, clipped to the scale;
        an empty row falls back to the item baseline ``mean + b_i``."""
        self._check_fold_in()
        if len(row[0]) == 0:
            log.info(
                "user %s has no usable rating: predicting the item baseline",
                show_id(user) if user is not None else "(new)",
            )
            scores = self.mean_ + self.item_bias_[items]
        else:
            state = self._fold_in(*row)
            warm = self.known_items[items]
            scores = np.empty(len(items), np.float32)
            scores[warm] = self._predict_folded(state, items[warm]) if warm.any() else []
            if not warm.all():
                scores[~warm] = self._folded_cold(state, items[~warm], row)
        scores = np.asarray(scores, dtype=np.float32)
        return np.clip(scores, *self.scale) if self.task == "rating" else scores

    def _history_rows(self, frame: pd.DataFrame) -> dict:
        """``{user key: (item indices, ratings)}`` from a history table; items the model does
        not know are ignored (and counted in the log); a rating outside the scale is an error.
        A history without ratings (a table without the column, or empty cells) holds
        interactions: their ratings are NaN, which a model that ranks from interactions
        ignores and a rating model refuses; a model that learnt from interactions without
        ratings refuses a history with ratings (it could not read them)."""
        self._check_fold_in()
        given = frame["rating"] if "rating" in frame else pd.Series(np.nan, index=frame.index)
        blank = given.isna() | (given.astype(str).str.strip() == "")
        ratings = pd.to_numeric(given.where(~blank), errors="coerce").to_numpy(dtype=np.float64)
        if self.task == "rating" and blank.any():
            row = int(np.argmax(blank.to_numpy()))
            raise DataError(
                f"history: user {show_id(frame['user'].iloc[row])} has item {show_id(frame['item'].iloc[row])} "
                f"without a rating; the {self.name} model folds users in from their ratings"
            )
        if self.implicit and not blank.all():
            row = int(np.argmin(blank.to_numpy()))
            raise DataError(
                f"history: item {show_id(frame['item'].iloc[row])} of user {show_id(frame['user'].iloc[row])} has "
                f"the rating {given.iloc[row]!r}, but this model learnt from interactions without ratings; give the "
                "history without ratings (the header user,item)"
            )
        bad = ~blank.to_numpy() & ~np.isfinite(ratings)
        if self.scale is not None:
            low, high = self.scale
            bad |= ~blank.to_numpy() & ((ratings < low) | (ratings > high))
        if bad.any():
            row = int(np.argmax(bad))
            scale = "" if self.scale is None else f", outside the rating scale {self.scale[0]:g}..{self.scale[1]:g}"
            raise DataError(
                f"history: user {show_id(frame['user'].iloc[row])} rated item {show_id(frame['item'].iloc[row])} "
                f"{given.iloc[row]!r}{scale or ', not a number'}"
            )
        items = lookup_ids(self.item_ids, frame["item"].to_numpy(), "item", missing_ok=True)
        usable = items >= 0
        usable[usable] &= self.known_items[items[usable]]
        if not usable.all():
            log.info("history: ignored %d item(s) the model does not know", int((~usable).sum()))
        keys = np.array([id_text(x) for x in frame["user"].to_numpy()], dtype=object)
        rows = {}
        for key in dict.fromkeys(keys):
            mine = (keys == key) & usable
            order = np.argsort(items[mine], kind="stable")
            rows[key] = (items[mine][order].astype(np.int64), ratings[mine][order].astype(np.float32))
        return rows

    def predict_new_user(self, history, items) -> np.ndarray:
        """Predicted ratings of raw ``items`` for a user the model never saw, known only by
        ``history`` (a dict raw item -> rating), folded in; unknown items in ``history`` are
        ignored, unknown ones in ``items`` are an error.

        Examples:
            >>> from neucf.models import Biases
            >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
            >>> Biases().fit(r).predict_new_user({1: 5.0}, [2]).shape
            (1,)
        """
        self._check_fitted()
        rows = self._history_rows(_history_frame(history, None))
        row = next(iter(rows.values()), (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        return self.predict_row(*row, lookup_ids(self.item_ids, items, "item"))

    def _checked_row(self, items, ratings) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float32)
        if items.shape != ratings.shape or (len(items) and not self.known_items[items].all()):
            raise DataError("a rating row needs as many ratings as items, each a known item's index")
        if self.task == "rating" and np.isnan(ratings).any():
            raise DataError(f"the {self.name} model folds users in from their ratings: every item needs one")
        order = np.argsort(items, kind="stable")
        return items[order], ratings[order]

    def predict_row(self, items, ratings, targets) -> np.ndarray:
        """Predictions for the known item indices ``targets`` of a new user given as a rating
        row (known item indices ``items`` and their ``ratings``), folded in: the index-level
        :meth:`predict_new_user`, for callers that hold indices (a server)."""
        targets = np.asarray(targets, dtype=np.int64)
        unknown = ~self.listable()[targets]
        if unknown.any():
            raise DataError(f"item {show_id(self.item_ids[targets[np.argmax(unknown)]])} has no training rating")
        return self._folded_scores(self._checked_row(items, ratings), targets, None)

    def _predict_with_history(self, users, items, history) -> np.ndarray:
        rows = self._history_rows(_history_frame(history, None))
        users = np.atleast_1d(np.asarray(users, dtype=object))
        items = np.atleast_1d(np.asarray(items))
        if users.shape != items.shape:
            raise UsageError(f"users and items must have the same length ({users.shape} vs {items.shape})")
        keys = np.array([id_text(x) for x in users], dtype=object)
        folded = np.isin(keys, list(rows))
        out = np.empty(len(users), dtype=np.float32)
        if (~folded).any():
            out[~folded] = self.predict(users[~folded], items[~folded])
        fallback = self.unknown == "fallback"
        for key in dict.fromkeys(keys[folded]):
            mine = np.flatnonzero(keys == key)
            item_index = lookup_ids(self.item_ids, items[mine], "item", missing_ok=fallback)
            known_item = item_index >= 0
            known_item[known_item] &= self.listable()[item_index[known_item]]
            if not known_item.all() and not fallback:
                bad = items[mine][int(np.argmin(known_item))]
                raise DataError(
                    f"item {show_id(bad)} has no training rating; pass unknown='fallback' (CLI: --fallback)"
                )
            row = self._merged_row(self._known_user(users[mine[0]]), *rows[key])
            out[mine] = self.mean_
            if known_item.any():
                out[mine[known_item]] = self._folded_scores(row, item_index[known_item], users[mine[0]])
        return out

    # ---- the estimator API: lists, evaluation, persistence, by the modules that do them ----
    def recommend(
        self, user=None, k: int = 10, exclude_seen: bool = True, history=None, user_attributes: dict | None = None,
        candidates=None,
    ) -> pd.DataFrame:  # fmt: skip
        """The top ``k`` items for a raw user id, best first: columns item, prediction (the
        score: a predicted rating, or a ranking score) and title (see :func:`neucf.lists.recommend`);
        ``history`` folds a user in from their ratings, ``user_attributes`` (a dict column ->
        value) describes a new user to a model that reads attributes; ``candidates`` (raw
        ids) narrows the list to those items.

        Examples:
            >>> from neucf.models import Biases
            >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
            >>> Biases().fit(r).recommend(2, k=1)["item"].tolist()
            [2]
        """
        from ..lists import recommend

        return recommend(self, user, k, exclude_seen, history, user_attributes, candidates)

    def recommend_index(self, u: int, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` for a known user's dense index, as arrays (:func:`neucf.lists.recommend_index`).

        Examples:
            >>> from neucf.models import Biases
            >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
            >>> Biases().fit(r).recommend_index(1, k=1)[0].tolist()
            [1]
        """
        from ..lists import recommend_index

        return recommend_index(self, u, k, exclude_seen)

    def recommend_row(self, items, ratings, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` for a new user given as a row of item indices and ratings (NaN: an
        interaction without one), folded in (:func:`neucf.lists.recommend_row`).

        Examples:
            >>> from neucf.models import Biases
            >>> r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
            >>> Biases().fit(r).recommend_row([0], [5.0], k=1)[0].tolist()
            [1]
        """
        from ..lists import recommend_row

        return recommend_row(self, items, ratings, k)

    def recommend_all(
        self, k: int = 10, exclude: Ratings | None = None, batch_users: int = 256, candidates=None
    ) -> pd.DataFrame:
        """Every known user's top ``k``, of ``candidates`` (raw ids) when given (:func:`neucf.lists.recommend_all`).

        Examples:
            >>> from neucf.models import Biases
            >>> r = Ratings.from_arrays([1, 1, 2, 2], [1, 2, 2, 3], [5.0, 3.0, 4.0, 2.0])
            >>> Biases().fit(r).recommend_all(k=1)[["user", "item", "rank"]].values.tolist()
            [[1, 3, 1], [2, 1, 1]]
        """
        from ..lists import recommend_all

        return recommend_all(self, k, exclude, batch_users, candidates)

    def evaluate(self, ratings: Ratings) -> dict:
        """RMSE and MAE on ``ratings`` (:func:`neucf.evaluation.rating_metrics`)."""
        from ..evaluation import rating_metrics

        return rating_metrics(self, ratings)

    def evaluate_ranking(
        self, test: Ratings, k: int = 10, relevant: float | None = None, exclude: Ratings | None = None
    ) -> dict:
        """Full-ranking metrics of the top-``k`` lists (:func:`neucf.evaluation.evaluate_ranking`)."""
        from ..evaluation import evaluate_ranking

        return evaluate_ranking(self, test, k, relevant, exclude)

    def save(self, path: str | Path) -> Path:
        """Write one file with config, weights, id maps, scale and the training data (atomically;
        :func:`neucf.models.persistence.save`)."""
        from .persistence import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Recommender:
        """Read a file written by :meth:`save`; ``Recommender.load`` returns the right class,
        ``NeuMF.load`` refuses a file of another. ``device`` is where the model will predict."""
        from .persistence import load

        return load(path, None if cls is Recommender else cls, device)

    def _state(self) -> dict:
        """Model-specific tensors (subclasses extend)."""
        return {}

    def _restore(self, state: dict, device: str) -> None:
        """Rebuild model-specific parts from :meth:`_state` (subclasses extend)."""


def _history_frame(history, user) -> pd.DataFrame:
    """A history as a table user, item[, rating]: a DataFrame as given, a dict item -> rating of
    ``user``, or a list of items of ``user`` (interactions without ratings)."""
    if isinstance(history, pd.DataFrame):
        missing = {"user", "item"} - set(history.columns)
        if missing:
            raise UsageError(f"history needs the columns user, item[, rating] (missing {', '.join(sorted(missing))})")
        return history
    if isinstance(history, dict):
        return pd.DataFrame({"user": [user] * len(history), "item": list(history), "rating": list(history.values())})
    if isinstance(history, (list, tuple, np.ndarray)):
        return pd.DataFrame({"user": [user] * len(history), "item": list(history)})
    raise UsageError("history must be a dict item -> rating, a list of items, or a DataFrame with user, item[, rating]")


def _by_user(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """The order of rows by user, then item, and where each user's rows start in it (one more
    than ``n_users``): a user's rows are ``order[starts[u]:starts[u + 1]]``."""
    order = np.lexsort((items, users))
    return order, np.searchsorted(users[order], np.arange(n_users + 1))
