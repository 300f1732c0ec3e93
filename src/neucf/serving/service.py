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
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import read_table
from ..datasets.ratings import id_text
from ..errors import DataError, UsageError
from ..feedback import Event, FeedbackStore, StoredItem, StoreUnavailable, store_url
from ..feedback.store import ServedList
from ..metrics import default_relevance
from ..models import Recommender
from ..runs import read_json, read_run

#: the most ratings one history may hold (a request body of 1 MB has room for them)
MAX_HISTORY = 10_000
#: the most served lists kept for the store while it is down (the oldest go first)
MAX_UNWRITTEN = 100_000


class UnknownId(DataError):
    """A user or item id the model does not know (a server answers 404)."""

    def __init__(self, kind: str, raw: str, why: str = "the model has no training rating of it"):
        super().__init__(f"unknown {kind} {raw!r}: {why}")
        self.kind, self.raw = kind, raw


class InvalidRequest(DataError):
    """A request that cannot be answered as asked, e.g. a rating outside the scale (422);
    ``field`` names the part of the body at fault."""

    def __init__(self, message: str, field: str = "ratings"):
        super().__init__(message)
        self.field = field


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

    With a ``store``, each list given to a known user is recorded (in batches: see
    :meth:`flush`), and a later positive event on one of its items within ``window`` seconds
    makes it a hit (the online hit rate); ``run`` and ``trained_at`` name the run served.
    """

    def __init__(
        self,
        model: Recommender,
        metrics: Mapping | None = None,
        titles: Mapping[str, str] | None = None,
        store: FeedbackStore | None = None,
        run: str | None = None,
        trained_at: float | None = None,
        window: float = 86_400.0,
    ):
        if not hasattr(model, "train_"):
            raise UsageError("the service needs a fitted model")
        self.model = model
        self.metrics = dict(metrics or {})
        self.store = store
        self.run, self.trained_at, self.window = run, trained_at, float(window)
        # lists not yet written to the store: a deque, whose appends and pops are atomic, so that
        # the upkeep thread's flush never loses a list the event loop adds meanwhile
        self._served: deque[ServedList] = deque(maxlen=MAX_UNWRITTEN)
        users = model.scorable("user")
        self._users = {id_text(x): i for i, x in enumerate(model.user_ids) if users[i]}
        self._titles = dict(titles) if titles is not None else None
        self._put: dict[str, str | None] = {}  # items put into the store that the model cannot list
        self._item_change = self._item_news = 0
        self._lock = threading.Lock()
        self._index_items()
        if store is not None:
            self._sync_items()
        model.warm_up()  # here, not in the first request: a swap builds the new run off the request path

    def _index_items(self) -> None:
        """The maps from item ids to the model's indices, the titles and the search order, made
        again whenever the catalogue grows; items put into the store that the model cannot
        score are found by search only, after the model's."""
        model = self.model
        keys = [id_text(x) for x in model.item_ids]
        listable = model.listable()
        self._items = {k: i for i, k in enumerate(keys) if listable[i]}
        extra = [k for k in self._put if k not in self._items]
        self._item_keys = np.array(keys + extra, dtype=object)
        if self._titles is not None:  # a titles file replaces the data's titles
            own = np.array([self._titles.get(k) for k in keys], dtype=object)
        elif model.item_titles is not None:
            own = model.item_titles
        else:
            own = None if not self._put else np.full(len(keys), None, dtype=object)
        if self._put and own is not None:  # a title put into the store wins
            titles = [*own[: len(keys)], *[None] * len(extra)]
            own = np.array([self._put.get(k) or t for k, t in zip(self._item_keys, titles)], dtype=object)
        self.titles = own
        known = np.flatnonzero(listable)
        counts = np.bincount(model.train_[1], minlength=len(keys))
        # search answers the most rated items first, then the newest (those added last)
        order = known[np.lexsort((-known, -counts[known]))]
        self._search_order = np.concatenate([order, np.arange(len(keys), len(self._item_keys))[::-1]]).astype(np.int64)
        searchable = self.titles if self.titles is not None else self._item_keys
        self._searchable = pd.Series(searchable[self._search_order]).fillna("").astype(str).str.lower()

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        items_file: str | Path | None = None,
        store: str | FeedbackStore | None = None,
        window: float = 86_400.0,
    ) -> RecommendationService:
        """The service of a run folder (``neucf train --out``), with titles from ``items_file``
        when given and the feedback store of ``store`` (a path or database URL, see
        :func:`~neucf.feedback.store_url`, or an open store) when given (a missing folder is a
        :class:`UsageError`, a damaged one a :class:`DataError`)."""
        titles = read_titles(items_file) if items_file is not None else None
        if isinstance(store, str):
            store = FeedbackStore(store_url(store))  # refuses a file inside a run folder
        model = read_run(run_dir)
        path = Path(run_dir) / "metrics.json"
        metrics = read_json(path) if path.is_file() else {}
        written = (Path(run_dir) / "config.json").stat().st_mtime
        run = str(Path(run_dir).resolve())
        return cls(model, metrics=metrics, titles=titles, store=store, run=run, trained_at=written, window=window)

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
            "feedback": self.store is not None,
            "run": self.run,
            "trained_at": None if self.trained_at is None else _iso(self.trained_at),
        }

    def recommend_user(self, user: str, k: int = 10, exclude_seen: bool = True) -> list[ItemScore]:
        """A known user's top ``k``, best first (items they rated in training excluded unless
        ``exclude_seen`` is False). With a feedback store the user's stored events count at
        once: merged into a trained user's history, or the whole history of a user known only
        to the store (folded in); the items they name are excluded too."""
        start = time.perf_counter()
        top = self._scored(*self._top(user, k, exclude_seen))
        if self.store is not None:
            self._served.append(ServedList(user, tuple(x.item for x in top), time.time(),
                                           time.perf_counter() - start, self.run))  # fmt: skip
            if len(self._served) >= 1000:
                try:
                    self.flush()
                except StoreUnavailable:  # the list is answered all the same; its record waits
                    pass
        return top

    def _top(self, user: str, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        from ..lists import recommend_history, recommend_index

        events, erased = self._stored(user)
        if not events:
            u = self._user(user, erased)
            with self._lock:
                return self.model.recommend_index(u, k=k, exclude_seen=exclude_seen)
        items, values, _ = self._history([(e.item, e.rating) for e in events])
        named = [self._items[e.item] for e in events if e.item in self._items]
        u = None if erased else self._users.get(user)
        known = u if u is not None and self.model.known_users[u] else None
        with self._lock:
            if self.model.can_fold_in:
                top = recommend_history(self.model, known, items, values, k, exclude_seen, seen=named)
            elif u is not None:  # a model that cannot fold in lists from training alone, less what was named
                allowed = self.model.listable()
                allowed[named] = not exclude_seen
                top = recommend_index(self.model, u, k, exclude_seen, allowed)
            else:
                self.model._check_fold_in()
        return top

    # ---- feedback (with a store) --------------------------------------------------------------
    def record(self, events: Sequence[Event]) -> int:
        """Check ``events`` (ratings against the model's scale; a rating model needs one, an
        implicit model takes none) and store them, all or none; returns how many were new.
        A positive event (any, for an implicit run; else a rating at or above the run's
        relevance threshold, or an interaction without one) makes a hit of each list served to
        its user in the last ``window`` seconds that holds its item."""
        store = self._needs_store()
        for n, e in enumerate(events):
            try:
                self._checked_rating(e.item, e.rating, where=f"event {n}: ")
            except InvalidRequest as exc:
                raise InvalidRequest(str(exc), "events") from None
            if not (math.isfinite(e.timestamp) and e.timestamp >= 0):
                raise InvalidRequest(
                    f"event {n}: timestamp {e.timestamp!r} is not Unix seconds (a number >= 0)", "events"
                )
        self.flush()  # the lists just served count
        model = self.model
        relevant = None if model.implicit else getattr(model, "relevance_threshold", None)
        if relevant is None and not model.implicit:
            relevant = default_relevance(model.scale)
        positive = [e.rating is None or relevant is None or e.rating >= relevant for e in events]
        # items the run was not trained on are folded in from their events, by every server
        # (those that can): this one at once, the others on their next read of the store
        cold = [] if not model.folds_items() else [x for x in dict.fromkeys(e.item for e in events) if self._cold(x)]
        stored = store.add(events, positive, self.window, news=cold)
        if cold:
            self._sync_items()
        return stored

    def flush(self) -> None:
        """Write the lists served since the last flush to the store (a server does it every
        second, and before storing feedback)."""
        served = []
        try:
            while True:
                served.append(self._served.popleft())
        except IndexError:
            pass
        if served:
            try:
                self.store.record_lists(served)
            except Exception:
                self._served.extendleft(reversed(served))  # kept for the next try
                raise

    def feedback(self, user: str) -> list[Event]:
        """The stored events of ``user``, oldest first; none is an :class:`UnknownId`."""
        events = self._needs_store().events_of(user)
        if not events:
            raise UnknownId("user", user, "the feedback store holds no event of it")
        return events

    def erase(self, user: str) -> None:
        """Erase ``user``: their stored events go, and the served model stops answering for the
        id (a trained user included); if the id gives feedback again, it is a new user. Items
        folded in from their events are folded again without them."""
        self._needs_store().erase(user)
        self._sync_items()

    def put_item(self, item: str, title: str | None = None, attributes: Mapping | None = None) -> None:
        """Create or replace ``item`` in the store; it joins the catalogue at once: found by
        :meth:`search`, listed from its attributes by a model that reads item attributes."""
        self._needs_store().put_item(item, title, dict(attributes or {}))
        self._sync_items()

    def _needs_store(self) -> FeedbackStore:
        if self.store is None:
            raise UsageError("this server keeps no feedback: start it with --store")
        return self.store

    def _stored(self, user: str) -> tuple[list[Event], bool]:
        """The user's stored events and whether the id was erased (none, False without a
        store), the catalogue brought up to date first (one read of the database)."""
        if self.store is None:
            return [], False
        events, erased, change, news = self.store.history(user)
        if change != self._item_change or news != self._item_news:
            self._sync_items()
        return events, erased

    def _catch_up(self) -> None:
        """Bring the catalogue up to date when the store's items changed (cheap reads)."""
        store = self.store
        if store is not None and (store.last_item_change(), store.last_news()) != (self._item_change, self._item_news):
            self._sync_items()

    def _sync_items(self) -> None:
        """Bring the items put into the store (by this worker or another) into the catalogue,
        and fold in again the items whose events changed that the run was not trained on."""
        with self._lock:
            put = self.store.items_since(self._item_change)
            changed, self._item_news = self.store.news_since(self._item_news)
            if not put and not changed:
                return
            for x in put:
                self._put[x.item] = x.title
            if put:
                self._add_to_model(put)
                self._item_change = put[-1].seq
            self._fold_items(changed)
            self._index_items()

    def _fold_items(self, items: Sequence[str]) -> None:
        """Fold ``items`` in from their stored events where the run was not trained on them
        and the model can (:meth:`~neucf.models.Recommender.folds_items`); only events of trained users count."""
        model = self.model
        if not items or not model.folds_items():
            return
        cold = [x for x in items if self._cold(x)]
        if not cold:
            return
        events = self.store.events_on(cold)
        table = pd.DataFrame({"user": [e.user for e in events], "item": [e.item for e in events],
                              "rating": [np.nan if e.rating is None else e.rating for e in events]})  # fmt: skip
        if model.implicit:
            table = table.drop(columns="rating")
        model._fold_items(table, named=cold)  # an item left without events loses its fold

    def _cold(self, item: str) -> bool:
        """Whether the run was not trained on ``item`` (a text id)."""
        index = self._items.get(item)
        return index is None or not self.model.known_items[index]

    def _add_to_model(self, news: Sequence[StoredItem]) -> None:
        """Items new to the model join it from their attributes, when it reads item attributes
        (attribute names it does not know are kept in the store and unused)."""
        from ..attributes import Attributes

        model = self.model
        if "item" not in model.attribute_sides():
            return
        have = set(self._item_keys[: len(model.item_ids)])
        fresh = {x.item: x for x in news if x.item not in have}
        if not fresh:
            return
        columns = model.catalogue_.maps["item"].columns
        table = pd.DataFrame(
            {name: [_attribute_text(x.attributes.get(name)) for x in fresh.values()] for name, _, _ in columns}
        )
        titles = pd.Series({k: x.title for k, x in fresh.items() if x.title is not None}, dtype=object)
        ids = np.array(list(fresh), dtype=object)
        model.add_items(
            Attributes(ids, table, {name: kind for name, kind, _ in columns}, titles if len(titles) else None)
        )

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

        self._catch_up()
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
        history's items and the attributes the model does not read, which were ignored. With a
        feedback store a ``user``'s stored events count, as in :meth:`recommend_user`."""
        from ..lists import new_user_scores, predict_history

        if (user is None) == (ratings is None and attributes is None):
            raise InvalidRequest("give either a known user or the ratings or attributes of a new one, not both")
        events, erased = self._stored(user) if user is not None else ([], False)
        if user is None:
            self._catch_up()
        elif not (events and self.model.can_fold_in):
            u = self._user(user, erased)
        index = np.array([self._item(x) for x in items], dtype=np.int64)
        ignored: list[str] = []
        usable, unread = self._attributes(attributes)
        if user is not None and events and self.model.can_fold_in:  # stored feedback counts, as in lists
            rated, values, _ = self._history([(e.item, e.rating) for e in events])
            u = None if erased else self._users.get(user)
            known = u if u is not None and self.model.known_users[u] else None
            with self._lock:
                out = predict_history(self.model, known, rated, values, index)
        elif user is not None:
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
        self._catch_up()
        fresh = np.array([i for i in self._items.values() if not self.model.known_items[i]], dtype=np.int64)
        index = np.sort(fresh)[::-1][: max(int(limit), 0)]
        return [{"item": self._item_keys[i], "title": self._title(i)} for i in index]

    def search(self, query: str = "", limit: int = 20) -> list[dict]:
        """Items whose title (or id, when there are no titles) contains ``query``, ignoring case;
        the most rated first."""
        self._catch_up()
        matches = self._searchable.str.contains(query.lower(), regex=False) if query else self._searchable.astype(bool)
        index = self._search_order[np.flatnonzero(matches.to_numpy())[: max(int(limit), 0)]]
        return [{"item": self._item_keys[i], "title": self._title(i)} for i in index]

    # ---- checks and conversions -----------------------------------------------------------
    def _user(self, user: str, erased: bool = False) -> int:
        """The model's index of ``user``; an id it does not know, or one ``erased`` from the
        feedback store, is an :class:`UnknownId`."""
        if erased:
            raise UnknownId("user", user, "erased from the feedback store")
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

    def _checked_rating(self, item: str, rating: float | None, where: str = "") -> float:
        model = self.model
        if rating is None:
            if model.task == "rating":
                raise InvalidRequest(f"{where}item {item!r}: the {model.name} model needs a rating for every item")
            return math.nan
        if model.implicit:
            raise InvalidRequest(
                f"{where}item {item!r}: this model learnt from interactions without ratings; "
                "send the item without a rating"
            )
        low, high = model.scale
        if not (math.isfinite(rating) and low <= rating <= high):
            raise InvalidRequest(f"{where}item {item!r}: rating {rating!r} is outside the scale {low:g}..{high:g}")
        return float(rating)

    def _scored(self, items: np.ndarray, predictions: np.ndarray) -> list[ItemScore]:
        return [ItemScore(self._item_keys[i], float(p), self._title(i)) for i, p in zip(items, predictions)]

    def _title(self, index: int) -> str | None:
        if self.titles is None:
            return None
        title = self.titles[index]
        return title if isinstance(title, str) else None


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _attribute_text(value) -> str:
    """An attribute value as an attribute file holds it: labels joined by ``|``, none as ``""``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "|".join(str(x) for x in value)
    return str(value)
