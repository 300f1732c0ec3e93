"""What a recommendation server answers, with no web framework involved.

:class:`RecommendationService` holds a trained model and answers with ids as text (as JSON
carries them): a known user's top k, predictions for a known user or for a new one given by
their ratings (fold-in), a new user's top k, and a title search. Every id is checked first:
an id the model does not know is an :class:`UnknownId` (a server's 404), a request that cannot
be answered as asked is an :class:`InvalidRequest` (a server's 422).

Model calls are serialised by a lock: the networks cache their input products between calls,
and torch already uses every core inside one call.

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> r = Ratings.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0], item_titles={10: "Ten", 20: "Twenty"})
    >>> service = RecommendationService(Biases().fit(r))
    >>> service.recommend_user("2", k=1)  # doctest: +ELLIPSIS
    [ItemScore(item='20', prediction=3.30..., title='Twenty')]
    >>> service.search("tw")
    [{'item': '20', 'title': 'Twenty'}]
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import read_table
from ..datasets.ratings import id_text
from ..errors import DataError, UsageError
from ..models import Recommender
from ..runs import read_json, read_run

#: the most ratings one history may hold (a request body of 1 MB has room for them)
MAX_HISTORY = 10_000


class UnknownId(DataError):
    """A user or item id the model does not know (a server answers 404)."""

    def __init__(self, kind: str, raw: str):
        super().__init__(f"unknown {kind} {raw!r}: the model has no training rating of it")
        self.kind, self.raw = kind, raw


class InvalidRequest(DataError):
    """A request that cannot be answered as asked, e.g. a rating outside the scale (422)."""


@dataclass(frozen=True)
class ItemScore:
    """One item of an answer: its id, the predicted rating and its title (None when unknown)."""

    item: str
    prediction: float
    title: str | None = None


def read_titles(path: str | Path) -> dict[str, str]:
    """Titles from a CSV file with the header ``item,title[,...]`` (other columns ignored).

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "items.csv")
        >>> _ = open(path, "w").write("item,title\\n50,Star Wars (1977)\\n")
        >>> read_titles(path)
        {'50': 'Star Wars (1977)'}
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such items file (a CSV with the header item,title)")
    table = read_table(path, ("item", "title"))  # read as every input table is (UTF-8, else Latin-1)
    return dict(zip(table["item"], table["title"]))


class RecommendationService:
    """A fitted model answering with text ids; ``titles`` (text item id -> title) replaces the
    titles the model brought from its data; ``metrics`` are shown by :meth:`describe`.

    Ids are matched as text, as :func:`~neucf.datasets.lookup_ids` does: ``"42"`` is the
    integer id 42. The users and items it knows are those with training ratings and, for a
    model that reads attributes, those it scores from their attributes; a new user's history
    is read from items with training ratings only (the others are ignored).
    """

    def __init__(self, model: Recommender, metrics: Mapping | None = None, titles: Mapping[str, str] | None = None):
        if not hasattr(model, "train_"):
            raise UsageError("the service needs a fitted model")
        self.model = model
        self.metrics = dict(metrics or {})
        users = model.scorable("user")
        self._users = {id_text(x): i for i, x in enumerate(model.user_ids) if users[i]}
        keys = [id_text(x) for x in model.item_ids]
        listable = model.listable()
        self._items = {k: i for i, k in enumerate(keys) if listable[i]}
        self._item_keys = np.array(keys, dtype=object)
        if titles is not None:
            self.titles = np.array([titles.get(k) for k in keys], dtype=object)
        elif model.item_titles is not None:
            self.titles = model.item_titles
        else:
            self.titles = None
        known = np.flatnonzero(listable)
        counts = np.bincount(model.train_[1], minlength=len(keys))
        # search answers the most rated items first, then the newest (those added last)
        self._search_order = known[np.lexsort((-known, -counts[known]))]
        searchable = self.titles if self.titles is not None else self._item_keys
        self._searchable = pd.Series(searchable[self._search_order]).fillna("").astype(str).str.lower()
        self._lock = threading.Lock()

    @classmethod
    def from_run(cls, run_dir: str | Path, items_file: str | Path | None = None) -> RecommendationService:
        """The service of a run folder (``neucf train --out``), with titles from ``items_file``
        when given (a missing folder is a :class:`UsageError`, a damaged one a :class:`DataError`)."""
        titles = read_titles(items_file) if items_file is not None else None
        model = read_run(run_dir)
        path = Path(run_dir) / "metrics.json"
        metrics = read_json(path) if path.is_file() else {}
        return cls(model, metrics=metrics, titles=titles)

    # ---- answers ----------------------------------------------------------------------------
    def describe(self) -> dict:
        """The model's name and task, parameters, test metrics, numbers of users and items,
        rating scale (None for interactions without ratings)."""
        test = self.metrics.get("test") if isinstance(self.metrics.get("test"), dict) else {}
        scale = self.model.scale
        return {
            "model": self.model.name,
            "task": self.model.task,
            "implicit": bool(self.model.implicit),
            "config": {"seed": self.model.seed, **self.model.get_params()},
            "metrics": {k: v for k, v in test.items() if isinstance(v, (int, float, dict)) and _finite(v)},
            "users": len(self._users),
            "items": len(self._items),
            "scale": None if scale is None else [float(x) for x in scale],
            "titles": self.titles is not None,
        }

    def recommend_user(self, user: str, k: int = 10, exclude_seen: bool = True) -> list[ItemScore]:
        """A known user's top ``k``, best first (items they rated in training excluded unless
        ``exclude_seen`` is False)."""
        u = self._user(user)
        with self._lock:
            top = self.model.recommend_index(u, k=k, exclude_seen=exclude_seen)
        return self._scored(*top)

    def recommend_new(
        self,
        ratings: Sequence[tuple[str, float | None]],
        k: int = 10,
        attributes: Mapping | None = None,
        candidates: Sequence[str] | None = None,
    ) -> tuple[list[ItemScore], list[str], list[str]]:
        """The top ``k`` of a new user, known by their history ((item, rating) pairs, the
        rating None for an interaction without one; folded in, its items excluded) or, where
        it holds no item the model can read, by ``attributes`` (a dict column -> value); of
        ``candidates`` (item ids) only, when given. Also the history's and the candidates'
        items the model does not know, and the attributes it does not read, which were
        ignored (a catalogue grows between trainings; a model may read no user attributes)."""
        from ..lists import recommend_attributes, recommend_row

        items, values, ignored = self._history(ratings)
        allowed, unknown = self._allowed(candidates)
        usable, unread = self._attributes(attributes)
        with self._lock:
            if len(items) or not usable:
                top = recommend_row(self.model, items, values, k=k, allowed=allowed)
            else:
                top = recommend_attributes(self.model, usable, k, allowed)
        return self._scored(*top), list(dict.fromkeys([*ignored, *unknown])), unread

    def _allowed(self, candidates: Sequence[str] | None) -> tuple[np.ndarray | None, list[str]]:
        """The mask of ``candidates`` the model can list, and those it cannot (ignored)."""
        if candidates is None:
            return None, []
        allowed = np.zeros(len(self._item_keys), bool)
        known = [self._items[c] for c in candidates if c in self._items]
        allowed[known] = True
        return allowed, list(dict.fromkeys(c for c in candidates if c not in self._items))

    def _attributes(self, attributes: Mapping | None) -> tuple[dict, list[str]]:
        """A new user's attributes the model reads, and the names of those it does not."""
        if not attributes:
            return {}, []
        reads = set()
        if "user" in self.model.attribute_sides():
            reads = {name for name, _, _ in self.model.catalogue_.maps["user"].columns}
        return {k: v for k, v in attributes.items() if k in reads}, [k for k in attributes if k not in reads]

    def predict(
        self,
        items: Sequence[str],
        user: str | None = None,
        ratings: Sequence[tuple[str, float | None]] | None = None,
        attributes: Mapping | None = None,
    ) -> tuple[list[float], list[str], list[str]]:
        """Predicted ratings (a ranking model's: scores) of ``items`` in their order, for a
        known ``user`` or for a new user given by their history and/or ``attributes`` (the
        history when it holds an item the model can read, else the attributes); and the
        history's items and the attributes the model does not read, which were ignored."""
        from ..lists import new_user_scores

        if (user is None) == (ratings is None and attributes is None):
            raise InvalidRequest("give either a known user or the ratings or attributes of a new one, not both")
        u = None if user is None else self._user(user)
        index = np.array([self._item(x) for x in items], dtype=np.int64)
        ignored: list[str] = []
        usable, unread = self._attributes(attributes)
        if u is not None:
            with self._lock:
                out = self.model.predict_index(np.full(len(index), u), index)
        else:
            rated, values, ignored = self._history(ratings or [])
            with self._lock:
                if len(rated) or not usable:
                    out = self.model.predict_row(rated, values, index)
                else:
                    out = new_user_scores(self.model, usable, index)
        return [float(x) for x in out], ignored, unread

    def newest(self, limit: int = 20) -> list[dict]:
        """The items nobody rated in training, known by their attributes (added to the
        catalogue since, or never rated), the newest (added last) first."""
        fresh = np.array([i for i in self._items.values() if not self.model.known_items[i]], dtype=np.int64)
        index = np.sort(fresh)[::-1][: max(int(limit), 0)]
        return [{"item": self._item_keys[i], "title": self._title(i)} for i in index]

    def search(self, query: str = "", limit: int = 20) -> list[dict]:
        """Items whose title (or id, when there are no titles) contains ``query``, ignoring case;
        the most rated first."""
        matches = self._searchable.str.contains(query.lower(), regex=False) if query else self._searchable.astype(bool)
        index = self._search_order[np.flatnonzero(matches.to_numpy())[: max(int(limit), 0)]]
        return [{"item": self._item_keys[i], "title": self._title(i)} for i in index]

    # ---- checks and conversions -----------------------------------------------------------
    def _user(self, user: str) -> int:
        if user not in self._users:
            raise UnknownId("user", user)
        return self._users[user]

    def _item(self, item: str) -> int:
        if item not in self._items:
            raise UnknownId("item", item)
        return self._items[item]

    def _history(self, ratings: Sequence[tuple[str, float | None]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """A history as the model takes it (item indices, ratings: NaN for an interaction
        without one), checked, and the items it holds that the model does not know (ignored);
        of an item given more than once, the last entry counts (as a newer rating replaces an
        older one). A rating model needs every rating; an implicit run takes none."""
        if len(ratings) > MAX_HISTORY:
            raise InvalidRequest(f"a history holds at most {MAX_HISTORY:,} ratings, got {len(ratings):,}")
        history, ignored = {}, []
        for item, rating in ratings:
            index = self._items.get(item)
            if index is None or not self.model.known_items[index]:  # a fold-in reads rated items only
                ignored.append(item)
                continue
            history[index] = self._checked_rating(item, rating)
        items = np.fromiter(history, np.int64, len(history))
        return items, np.fromiter(history.values(), np.float32, len(history)), list(dict.fromkeys(ignored))

    def _checked_rating(self, item: str, rating: float | None) -> float:
        model = self.model
        if rating is None:
            if model.task == "rating":
                raise InvalidRequest(f"item {item!r}: the {model.name} model needs a rating for every item")
            return math.nan
        if model.implicit:
            raise InvalidRequest(
                f"item {item!r}: this model learnt from interactions without ratings; send the item without a rating"
            )
        low, high = model.scale
        if not (math.isfinite(rating) and low <= rating <= high):
            raise InvalidRequest(f"item {item!r}: rating {rating!r} is outside the scale {low:g}..{high:g}")
        return float(rating)

    def _scored(self, items: np.ndarray, predictions: np.ndarray) -> list[ItemScore]:
        return [ItemScore(self._item_keys[i], float(p), self._title(i)) for i, p in zip(items, predictions)]

    def _title(self, index: int) -> str | None:
        if self.titles is None:
            return None
        title = self.titles[index]
        return title if isinstance(title, str) else None


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
