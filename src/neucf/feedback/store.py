"""The feedback store: what users did, the items added since training and the erasures, in a
SQLite file or a PostgreSQL database, through SQLAlchemy.

Its tables, made on first use:

- ``feedback_events``: one row per (user, item): rating (NULL for an interaction without
  one), timestamp (Unix seconds), the order it was stored in (``seq``). A later event on the
  same user and item replaces the earlier one; one that is older (by timestamp) than the
  stored one is acknowledged and dropped.
- ``feedback_event_ids``: the client ids of the events ever stored, so that a retried
  request stores nothing twice (an id seen before: the event is acknowledged and dropped).
- ``feedback_erasures``: who was erased and when (``seq`` orders it among the events: a user's
  events stored after their erasure are a new person's).
- ``feedback_items``: items put since training: title, attributes (JSON); ``seq`` grows with
  every put, so that each worker reads only what changed since it last looked.
- ``feedback_batches``: each stored request: how many events it held and when the server
  received it (events per hour, and the events since the last retraining, are read here).
- ``feedback_lists``: each list a server gave a user: its items (JSON), when, from which run,
  how long it took, and when a later positive event on one of its items made it a hit.
- ``feedback_runs`` and ``feedback_locks``: the runs of a retraining server (trained when,
  judged how, live since when: the live run is the one that went live last) and the lock that
  lets one retraining run at a time across workers and servers.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk before it is
acknowledged), takes its write lock at the start of a write transaction (``BEGIN IMMEDIATE``:
two workers never deadlock upgrading a read lock) and waits up to 30 s for it. Every failure
of the database itself (full disk, lost connection, lock timeout) is a :class:`StoreUnavailable`
naming its first line; the transaction is rolled back, so a request stores all or nothing.

Examples:
    >>> store = FeedbackStore("sqlite://")  # in memory, for the example
    >>> store.add([Event("u1", "i1", 4.0, 1.0), Event("u1", "i2", None, 2.0)])
    2
    >>> [(e.item, e.rating) for e in store.events_of("u1")]
    [('i1', 4.0), ('i2', None)]
    >>> store.erase("u1"); store.events_of("u1"), store.erased_users()
    ([], {'u1'})
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import NeucfError, UsageError
from ..files import check_database_url

log = logging.getLogger(__name__)

#: the longest user or item id, event id and title the store keeps
MAX_ID = 256
#: how long a SQLite writer waits for another's lock before the request fails (503)
SQLITE_WAIT_S = 30.0


class StoreUnavailable(NeucfError):
    """The database failed (full disk, connection lost, locked too long): nothing was stored
    by the failed call (a server answers 503 and recovers when the database does)."""


@dataclass(frozen=True)
class Event:
    """One thing a user did: ``rating`` None for an interaction without one; ``timestamp``
    Unix seconds; ``id`` the client's id for it (a retried request stores nothing twice)."""

    user: str
    item: str
    rating: float | None
    timestamp: float
    id: str | None = None


class History(NamedTuple):
    """A user's stored events (oldest first), whether the id was ever erased, the newest item
    change number and the newest item news number (see :meth:`FeedbackStore.history`)."""

    events: list[Event]
    erased: bool
    item_change: int
    item_news: int = 0


@dataclass(frozen=True)
class StoredItem:
    """An item put into the store: its change number, id, title and attributes."""

    seq: int
    item: str
    title: str | None
    attributes: dict


_meta = sa.MetaData()
# a 64-bit key, which SQLite spells INTEGER to make it the rowid
_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_events = sa.Table(
    "feedback_events", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(MAX_ID), nullable=False),
    sa.Column("item_id", sa.String(MAX_ID), nullable=False),
    sa.Column("rating", sa.Float, nullable=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "item_id", name="feedback_events_user_item"),
)  # fmt: skip
# an item's events, read when a server folds the item in (made on stores older than it too)
_events_by_item = sa.Index("feedback_events_item", _events.c.item_id)
_event_ids = sa.Table("feedback_event_ids", _meta, sa.Column("event_id", sa.String(MAX_ID), primary_key=True))
_erasures = sa.Table(
    "feedback_erasures", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(MAX_ID), nullable=False, index=True),
    sa.Column("erased_at", sa.Float, nullable=False),
)  # fmt: skip
_items = sa.Table(
    "feedback_items", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(MAX_ID), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("attributes", sa.Text, nullable=False),
)  # fmt: skip
# items whose stored events changed that a server may fold in from them (those its run was not
# trained on, as the server that stored them says; every item of an erased user)
_item_news = sa.Table(
    "feedback_item_news", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(MAX_ID), nullable=False),
)  # fmt: skip


_batches = sa.Table(
    "feedback_batches", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)  # fmt: skip
_lists = sa.Table(
    "feedback_lists", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(MAX_ID), nullable=False),
    sa.Column("item_ids", sa.Text, nullable=False),
    sa.Column("run", sa.Text, nullable=True),
    sa.Column("served_at", sa.Float, nullable=False, index=True),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("hit_at", sa.Float, nullable=True),
    sa.Index("feedback_lists_user", "user_id", "served_at"),
)  # fmt: skip
_runs = sa.Table(
    "feedback_runs", _meta,
    sa.Column("seq", _Key, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("trained_at", sa.Float, nullable=True),
    sa.Column("live_since", sa.Float, nullable=True, index=True),
    sa.Column("batch", sa.BigInteger, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
)  # fmt: skip
_locks = sa.Table(
    "feedback_locks", _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(MAX_ID), nullable=False),
    sa.Column("until", sa.Float, nullable=False),
)  # fmt: skip


@dataclass(frozen=True)
class ServedList:
    """A list a server gave ``user``: its items, when, how long it took, from which run."""

    user: str
    items: tuple[str, ...]
    served_at: float
    seconds: float
    run: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A run of a retraining server: its folder, status (``live``: it went live; ``rejected``:
    judged worse than the live run; ``failed``; ``training``), when its training started and
    ended, when it last went live (None: never), the events stored before its training
    started (a batch number) and its ``scores`` (JSON: the judgement)."""

    seq: int
    path: str
    status: str
    started_at: float
    trained_at: float | None
    live_since: float | None
    batch: int
    scores: dict


def store_url(store: str) -> str:
    """The database URL of a ``--store``: a URL as it is (``postgresql://`` through the
    psycopg driver), a file path as a SQLite file (``sqlite:///`` and its absolute path); one that cannot be a database, or a SQLite file
    inside a neucf output folder (a run), is a :class:`~neucf.errors.UsageError`.

    Examples:
        >>> store_url("postgresql://neucf@db/neucf")
        'postgresql+psycopg://neucf@db/neucf'
        >>> store_url("mysql://x/y")
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: --store 'mysql://x/y': the feedback store is a SQLite file or a PostgreSQL database (sqlite:///PATH, postgresql://...)
    """
    if "://" not in store:
        store = "sqlite:///" + str(Path(store).expanduser().resolve())
    try:
        url = make_url(store)
    except (ArgumentError, ValueError):
        raise UsageError(f"--store {store!r} is not a file path nor a database URL; use e.g. feedback.db") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UsageError(
            f"--store {store!r}: the feedback store is a SQLite file or a PostgreSQL database "
            "(sqlite:///PATH, postgresql://...)"
        )
    check_database_url(url, f"--store {store!r}")
    if backend == "postgresql" and url.drivername == "postgresql":
        store = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return store


def _sqlite_engine(url: str, writer: bool) -> sa.Engine:
    # pysqlite's own transaction handling is turned off so that a write can begin IMMEDIATE
    # (SQLAlchemy's documented recipe); readers begin deferred and never wait in WAL mode
    memory = make_url(url).database in (None, "", ":memory:")
    options = {"poolclass": sa.pool.StaticPool} if memory else {}
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_WAIT_S, "check_same_thread": False}, **options)

    @sa_event.listens_for(engine, "connect")
    def _settings(connection, _record):
        connection.isolation_level = None
        cursor = connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def _first_line(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class FeedbackStore:
    """What users did, the items put since training and the erasures, in the database of
    ``store`` (see :func:`store_url`; SQLite in memory with ``"sqlite://"``). Safe to share
    between threads, worker processes and servers (one database, many writers).

    Examples:
        >>> store = FeedbackStore("sqlite://")
        >>> store.put_item("new", "A new film", {"genres": ["Comedy"]})
        >>> [(x.item, x.title) for x in store.items_since(0)]
        [('new', 'A new film')]
    """

    def __init__(self, store: str | os.PathLike):
        store = os.fspath(store)
        url = store_url(store) if store != "sqlite://" else store
        self.url = url
        self._sqlite = make_url(url).get_backend_name() == "sqlite"
        if self._sqlite:
            self._write = _sqlite_engine(url, writer=True)
            self._read = self._write if make_url(url).database in (None, "", ":memory:") else _sqlite_engine(url, False)
        else:
            self._write = self._read = sa.create_engine(url, pool_pre_ping=True)
        compiled = _HISTORY.compile(dialect=self._read.dialect)
        self._history_sql = (str(compiled), compiled.positiontup)
        marker = "?" if self._sqlite else "%s"
        self._insert_list_sql = (
            "INSERT INTO feedback_lists (user_id, item_ids, run, served_at, seconds) VALUES "
            f"({', '.join([marker] * 5)})"
        )
        self._driver_error = self._read.dialect.loaded_dbapi.Error
        with self._failing("make its tables"):
            for wait in (0.1, 0.5, 0):  # several workers may start at once: one makes them
                try:
                    _meta.create_all(self._write)
                    _events_by_item.create(self._write, checkfirst=True)
                    break
                except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                    if not wait:
                        raise
                    time.sleep(wait)

    def __repr__(self) -> str:
        return f"FeedbackStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, self._driver_error) as exc:
            raise StoreUnavailable(
                f"the feedback store could not {doing} ({_first_line(exc)}); nothing was changed: "
                "retry when the database is back"
            ) from None

    @contextmanager
    def _cursor(self, engine: sa.Engine, doing: str) -> Iterator:
        """A cursor of the driver's own on a pooled connection of ``engine``, committed at the
        end (which also ends PostgreSQL's implicit transaction of a read); a failure drops the
        connection."""
        with self._failing(doing):
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                yield cursor
                cursor.close()
                raw.commit()
            except self._driver_error:
                raw.invalidate()
                raise
            finally:
                raw.close()

    def close(self) -> None:
        """Close every connection (a new call opens them again)."""
        self._write.dispose()
        self._read.dispose()

    # ---- events -----------------------------------------------------------------------------
    def add(
        self,
        events: Sequence[Event],
        positive: Sequence[bool] | None = None,
        window: float = 86_400.0,
        news: Sequence[str] = (),
    ) -> int:
        """Store ``events`` in one transaction (all or none); returns how many were new: an
        event whose ``id`` was stored before is dropped, and counts as not new.

        Of the events on one user and item the latest (by timestamp, then by order) is kept.
        A new event marked ``positive`` makes each list served to its user in the last
        ``window`` seconds that holds its item a hit (see :meth:`record_lists`). ``news``:
        items of the events whose change every server should hear of (:meth:`news_since`),
        those its run was not trained on.
        """
        latest: dict[tuple[str, str], Event] = {}
        ids: set[str] = set()
        fresh = []
        marks = [False] * len(events) if positive is None else list(positive)
        for e, mark in zip(events, marks):
            if e.id is not None:
                if e.id in ids:
                    continue
                ids.add(e.id)
            fresh.append((e, mark))
        now = time.time()
        with self._failing("store the events"), self._write.begin() as conn:
            if ids:
                # one statement compiled once, its rows sent in batches (SQLAlchemy's
                # "insertmanyvalues"); a statement of literal rows is compiled anew each time
                new = set(conn.scalars(_NEW_IDS[self._sqlite], [{"event_id": x} for x in ids]))
                fresh = [(e, mark) for e, mark in fresh if e.id is None or e.id in new]
            for e, _ in fresh:
                key = (e.user, e.item)
                if key not in latest or e.timestamp >= latest[key].timestamp:
                    latest[key] = e
            if latest:
                rows = [{"user_id": e.user, "item_id": e.item, "rating": e.rating, "timestamp": e.timestamp}
                        for e in latest.values()]  # fmt: skip
                conn.execute(_UPSERT[self._sqlite], rows)
                conn.execute(sa.insert(_batches).values(events=len(fresh), received_at=now))
            hits = {(e.user, e.item) for e, mark in fresh if mark}
            if hits:
                self._mark_hits(conn, hits, now - window, now)
            if latest and news:
                conn.execute(sa.insert(_item_news), [{"item_id": x} for x in sorted(set(news))])
        return len(fresh)

    def _mark_hits(self, conn, hits: set[tuple[str, str]], since: float, now: float) -> None:
        """Make a hit of each list served since ``since`` (not one yet) to a user of ``hits``
        that holds the item."""
        users = sorted({u for u, _ in hits})
        query = sa.select(_lists.c.seq, _lists.c.user_id, _lists.c.item_ids).where(
            _lists.c.user_id.in_(users), _lists.c.served_at >= since, _lists.c.hit_at.is_(None)
        )
        listed = conn.execute(query).all()
        won = [seq for seq, user, items in listed if any((user, i) in hits for i in json.loads(items))]
        if won:
            conn.execute(sa.update(_lists).where(_lists.c.seq.in_(won)).values(hit_at=now))

    def record_lists(self, lists: Sequence[ServedList]) -> None:
        """Store the lists a server gave, in one transaction: the online hit rate counts them."""
        if not lists:
            return
        # the driver's own executemany: SQLAlchemy's layers held a server's event loop for tens
        # of milliseconds over a second's lists
        rows = [(x.user, json.dumps(x.items), x.run, x.served_at, x.seconds) for x in lists]
        with self._cursor(self._write, "store the served lists") as cursor:
            if self._sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(self._insert_list_sql, rows)

    def hit_rate(self, since: float) -> tuple[int, int]:
        """Lists served since ``since`` (Unix seconds) and how many of them were hits."""
        query = sa.select(sa.func.count(), sa.func.count(_lists.c.hit_at)).where(_lists.c.served_at >= since)
        with self._failing("read the served lists"), self._read.begin() as conn:
            lists, hits = conn.execute(query).one()
        return int(lists), int(hits)

    def activity(self, since: float, bucket: float = 3600.0) -> dict[str, list]:
        """What happened since ``since``, by ``bucket`` of seconds (start times, Unix seconds):
        events stored, lists served with their hits and mean and longest time."""
        width = int(bucket)
        served = sa.cast(_lists.c.served_at, sa.BigInteger) // width
        received = sa.cast(_batches.c.received_at, sa.BigInteger) // width
        lists = (
            sa.select(served.label("b"), sa.func.count(), sa.func.count(_lists.c.hit_at),
                      sa.func.avg(_lists.c.seconds), sa.func.max(_lists.c.seconds))
            .where(_lists.c.served_at >= since).group_by(served).order_by(served)
        )  # fmt: skip
        events = (
            sa.select(received.label("b"), sa.func.sum(_batches.c.events))
            .where(_batches.c.received_at >= since).group_by(received).order_by(received)
        )  # fmt: skip
        with self._failing("read the activity"), self._read.begin() as conn:
            listed = conn.execute(lists).all()
            stored = conn.execute(events).all()
        return {
            "lists": [{"at": int(b) * width, "lists": int(n), "hits": int(h), "mean_s": float(m), "max_s": float(x)}
                      for b, n, h, m, x in listed],
            "events": [{"at": int(b) * width, "events": int(n)} for b, n in stored],
        }  # fmt: skip

    def last_batch(self) -> int:
        """The newest stored request's number (0 when none)."""
        with self._failing("read the events"), self._read.begin() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(_batches.c.seq), 0))))

    def events_since(self, batch: int) -> int:
        """How many events were stored after request number ``batch`` (see :meth:`last_batch`)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(_batches.c.events), 0)).where(_batches.c.seq > batch)
        with self._failing("read the events"), self._read.begin() as conn:
            return int(conn.scalar(query))

    def events_of(self, user: str) -> list[Event]:
        """The stored events of ``user``, oldest first (by timestamp, then by order stored)."""
        return self.history(user).events

    def history(self, user: str) -> History:
        """What a server needs to answer for ``user``, read in one statement: their stored
        events (oldest first), whether the id was ever erased, the newest item change."""
        # one statement (a consistent snapshot without a transaction) on the driver's own
        # cursor: SQLAlchemy's layers cost a server a sixth of a list's time here
        sql, order = self._history_sql
        params = tuple(user for _ in order) if order else {"user": user}
        with self._cursor(self._read, "read the user's events") as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        erased, change, news = rows[0][:3]
        events = [Event(user, item, rating, ts) for _, _, _, item, rating, ts in rows if item is not None]
        return History(events, bool(erased), int(change), int(news))

    def all_events(self) -> list[Event]:
        """Every stored event, in the order stored (a retraining reads them)."""
        query = sa.select(_events.c.user_id, _events.c.item_id, _events.c.rating, _events.c.timestamp)
        with self._failing("read the events"), self._read.begin() as conn:
            rows = conn.execute(query.order_by(_events.c.seq)).all()
        return [Event(*row) for row in rows]

    def erase(self, user: str) -> None:
        """Delete every stored event of ``user`` and record the erasure (which keeps every
        later training from the user's rows: see :meth:`erased_users`)."""
        with self._failing("erase the user"), self._write.begin() as conn:
            items = conn.scalars(sa.delete(_events).where(_events.c.user_id == user).returning(_events.c.item_id)).all()
            conn.execute(sa.insert(_erasures).values(user_id=user, erased_at=time.time()))
            if items:  # items folded in from the user's events are folded again without them
                conn.execute(sa.insert(_item_news), [{"item_id": x} for x in sorted(set(items))])

    def erased_users(self) -> set[str]:
        """Every user id ever erased."""
        with self._failing("read the erasures"), self._read.begin() as conn:
            return set(conn.scalars(sa.select(_erasures.c.user_id).distinct()))

    def last_erasure(self) -> float | None:
        """When the newest erasure was made (None: never)."""
        with self._failing("read the erasures"), self._read.begin() as conn:
            return conn.scalar(sa.select(sa.func.max(_erasures.c.erased_at)))

    def count(self) -> int:
        """How many (user, item) events the store holds."""
        with self._failing("count the events"), self._read.begin() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(_events)))

    # ---- items ------------------------------------------------------------------------------
    def put_item(self, item: str, title: str | None, attributes: dict) -> None:
        """Create or replace ``item`` (its change number grows, so every reader sees it)."""
        with self._failing("store the item"), self._write.begin() as conn:
            conn.execute(sa.delete(_items).where(_items.c.item_id == item))
            conn.execute(sa.insert(_items).values(item_id=item, title=title, attributes=json.dumps(attributes)))

    def items_since(self, seq: int) -> list[StoredItem]:
        """The items put after change number ``seq`` (0: all), in the order they were put."""
        query = sa.select(_items).where(_items.c.seq > seq).order_by(_items.c.seq)
        with self._failing("read the items"), self._read.begin() as conn:
            rows = conn.execute(query).all()
        return [StoredItem(int(r.seq), r.item_id, r.title, json.loads(r.attributes)) for r in rows]

    def last_item_change(self) -> int:
        """The newest item's change number (0 when none): a cheap test for news."""
        with self._failing("read the items"), self._read.begin() as conn:
            return int(conn.scalar(sa.select(_last_item_change())))

    def last_news(self) -> int:
        """The newest item news number (0 when none; see :meth:`news_since`)."""
        with self._failing("read the items"), self._read.begin() as conn:
            return int(conn.scalar(sa.select(_last_news())))

    def news_since(self, seq: int) -> tuple[list[str], int]:
        """The items whose events changed after news number ``seq`` (see :meth:`add`; each
        once) and the newest news number."""
        query = sa.select(_item_news.c.seq, _item_news.c.item_id).where(_item_news.c.seq > seq)
        with self._failing("read the items"), self._read.begin() as conn:
            rows = conn.execute(query.order_by(_item_news.c.seq)).all()
        return list(dict.fromkeys(item for _, item in rows)), max((int(n) for n, _ in rows), default=seq)

    def events_on(self, items: Sequence[str]) -> list[Event]:
        """The stored events on ``items``, in the order stored."""
        query = sa.select(_events.c.user_id, _events.c.item_id, _events.c.rating, _events.c.timestamp)
        found = []
        with self._failing("read the events"), self._read.begin() as conn:
            for start in range(0, len(items), 1000):  # a bounded IN list
                chunk = list(items[start : start + 1000])
                found += conn.execute(query.where(_events.c.item_id.in_(chunk)).order_by(_events.c.seq)).all()
        return [Event(*row) for row in found]

    # ---- runs of a retraining server ----------------------------------------------------------
    def start_run(self, path: str, batch: int) -> int:
        """Record that a run's training began (status ``training``); returns its number."""
        values = dict(path=path, status="training", started_at=time.time(), batch=batch, scores="{}")
        with self._failing("record the run"), self._write.begin() as conn:
            return int(conn.execute(sa.insert(_runs).values(**values)).inserted_primary_key[0])

    def finish_run(self, seq: int, status: str, scores: dict, trained_at: float | None = None) -> None:
        """Record how run ``seq`` ended (``live`` makes it the live run now)."""
        values = dict(status=status, scores=json.dumps(scores), trained_at=trained_at)
        if status == "live":
            values["live_since"] = time.time()
        with self._failing("record the run"), self._write.begin() as conn:
            conn.execute(sa.update(_runs).where(_runs.c.seq == seq).values(**values))

    def make_live(self, path: str, trained_at: float, batch: int = 0) -> None:
        """Make the run at ``path`` live now; a run never recorded is recorded first, as begun
        now after request number ``batch`` (a server's first run, a rollback's)."""
        now = time.time()
        with self._failing("record the run"), self._write.begin() as conn:
            seq = conn.scalar(sa.select(sa.func.max(_runs.c.seq)).where(_runs.c.path == path))
            if seq is None:
                conn.execute(sa.insert(_runs).values(
                    path=path, status="live", started_at=now, trained_at=trained_at, live_since=now,
                    batch=batch, scores="{}",
                ))  # fmt: skip
            else:
                conn.execute(sa.update(_runs).where(_runs.c.seq == seq).values(status="live", live_since=now))

    def live_run(self) -> RunRecord | None:
        """The run that went live last (None: none did)."""
        query = sa.select(_runs).where(_runs.c.live_since.is_not(None))
        with self._failing("read the runs"), self._read.begin() as conn:
            row = conn.execute(query.order_by(_runs.c.live_since.desc(), _runs.c.seq.desc()).limit(1)).first()
        return None if row is None else _run_record(row)

    def runs(self) -> list[RunRecord]:
        """Every recorded run, oldest first."""
        with self._failing("read the runs"), self._read.begin() as conn:
            return [_run_record(row) for row in conn.execute(sa.select(_runs).order_by(_runs.c.seq)).all()]

    def take_lock(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lock ``name`` for ``seconds`` unless another holder's is still
        valid; True when ``holder`` has it. A holder that dies loses it when it runs out."""
        now = time.time()
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(_locks)
        stmt = insert.values(name=name, holder=holder, until=now + seconds).on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": holder, "until": now + seconds},
            where=(_locks.c.until < now) | (_locks.c.holder == holder),
        )
        with self._failing("take the lock"), self._write.begin() as conn:
            conn.execute(stmt)
            return conn.scalar(sa.select(_locks.c.holder).where(_locks.c.name == name)) == holder

    def release_lock(self, name: str, holder: str) -> None:
        """Give the lock ``name`` back, if ``holder`` has it."""
        with self._failing("release the lock"), self._write.begin() as conn:
            conn.execute(sa.delete(_locks).where((_locks.c.name == name) & (_locks.c.holder == holder)))


def _run_record(row) -> RunRecord:
    return RunRecord(
        int(row.seq),
        row.path,
        row.status,
        row.started_at,
        row.trained_at,
        row.live_since,
        int(row.batch),
        json.loads(row.scores),
    )


def _last_item_change():
    return sa.select(sa.func.coalesce(sa.func.max(_items.c.seq), sa.literal_column("0"))).scalar_subquery()


def _last_news():
    return sa.select(sa.func.coalesce(sa.func.max(_item_news.c.seq), sa.literal_column("0"))).scalar_subquery()


# a server reads these on every list: built once (SQLAlchemy then reuses their compiled form)
# a user's history: whether they were erased, the newest item change and news, joined to their
# events (one row of NULL events when there are none)
_STATE = sa.select(
    sa.exists().where(_erasures.c.user_id == sa.bindparam("user")).label("erased"),
    _last_item_change().label("item_change"),
    _last_news().label("item_news"),
).subquery()
_COLUMNS = (_STATE.c.erased, _STATE.c.item_change, _STATE.c.item_news, _events.c.item_id, _events.c.rating,
            _events.c.timestamp)  # fmt: skip
_HISTORY = (
    sa.select(*_COLUMNS)
    .select_from(_STATE.outerjoin(_events, _events.c.user_id == sa.bindparam("user")))
    .order_by(_events.c.timestamp, _events.c.seq)
)


def _upsert(insert):
    """An event replaces the stored one on the same user and item unless it is older."""
    stmt = insert(_events)
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "item_id"],
        set_={"rating": stmt.excluded.rating, "timestamp": stmt.excluded.timestamp},
        where=stmt.excluded.timestamp >= _events.c.timestamp,
    )


# by dialect (True: SQLite): the event ids not stored before, and the events' upsert
_NEW_IDS = {lite: insert(_event_ids).on_conflict_do_nothing().returning(_event_ids.c.event_id)
            for lite, insert in ((True, sqlite.insert), (False, postgresql.insert))}  # fmt: skip
_UPSERT = {True: _upsert(sqlite.insert), False: _upsert(postgresql.insert)}
