"""The run a server answers from, and its upkeep: served lists written to the feedback store,
the store's live run followed, retraining on a schedule.

:class:`LiveService` holds the current :class:`~neucf.serving.RecommendationService`. Each
request reads it once and answers from it whole; a new run is loaded off the event loop, in
the upkeep thread, and put in its place in one assignment, between requests: no request
fails, none meets a half-loaded model, and one in flight finishes on the run it began with.

With a ``policy`` (``neucf serve --runs-dir``) the server follows the store's live run: at
start it serves it (or records its own run as live when the store has none) and it swaps to
whichever run goes live later, by its own retraining, another server's or ``neucf
rollback``. A live run whose folder cannot be read here (another machine's ``--runs-dir``,
not shared) is logged once and the server keeps its run.

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> r = Ratings.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0])
    >>> live = LiveService(RecommendationService(Biases().fit(r)))
    >>> live.service.model.name
    'bias'
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ..errors import NeucfError
from ..feedback import StoreUnavailable
from ..retraining.loop import NICE, Policy, Retrainer
from .service import RecommendationService

log = logging.getLogger(__name__)


class LiveService:
    """The service a server answers from now (``service``), swapped whole for the live run's
    (see the module); ``items`` is the titles file each new run's service reads; ``poll`` the
    seconds between two looks at the store."""

    def __init__(
        self,
        service: RecommendationService,
        policy: Policy | None = None,
        items: str | Path | None = None,
        poll: float = 1.0,
    ):
        self.service = service
        self.policy = policy if service.store is not None else None
        self.items, self.poll = items, poll
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unreadable: set[str] = set()
        self._retired: RecommendationService | None = None  # the run swapped out last
        self._swapping = threading.Lock()
        self.retrainer = Retrainer(service.store, policy) if self.policy and self.policy.retrains else None

    def adopt(self) -> None:
        """Serve the store's live run now, or record this server's as live when there is none."""
        if self.policy is None:
            return
        store, live = self.service.store, self.service.store.live_run()
        if live is None:
            store.make_live(self.service.run, self.service.trained_at, store.last_batch())
            log.info("%s is the live run of %r", self.service.run, store)
        elif live.path != self.service.run:
            self.swap(live.path)

    def swap(self, run: str) -> bool:
        """Load the run at ``run`` and answer from it from the next request on (False, logged
        once, when it cannot be read here). One swap at a time: the retraining thread and the
        upkeep thread may both see a run go live."""
        with self._swapping:
            old = self.service
            if old.run == run:
                return True
            try:
                new = RecommendationService.from_run(run, self.items, store=old.store, window=old.window)
            except (NeucfError, OSError) as exc:
                if run not in self._unreadable:
                    self._unreadable.add(run)
                    log.warning("cannot serve the live run %s here, serving %s still: %s", run, old.run, exc)
                return False
            self.service = new  # one assignment: the next request reads the new run
            log.info("now serving %s (was %s)", run, old.run)
            # a request that began on the old run records its list there: each look writes it out
            retired, self._retired = self._retired, old
        if retired is not None:
            try:
                retired.flush()
            except StoreUnavailable:
                pass
        return True

    def step(self) -> None:
        """One look at the store: write the served lists, follow the live run."""
        service = self.service
        if service.store is None:
            return
        try:
            service.flush()
            if self._retired is not None:
                self._retired.flush()
            if self.policy is not None:
                live = service.store.live_run()
                if live is not None and live.path != service.run and live.path not in self._unreadable:
                    self.swap(live.path)
        except StoreUnavailable as exc:
            log.warning("%s", exc)

    def start(self) -> None:
        """Start the upkeep (and, with a retraining policy, the retraining) thread."""
        if self.service.store is None or self._threads:
            return
        self._stop.clear()
        if self.retrainer is not None:
            self.retrainer.cancelled = False
        self._threads = [threading.Thread(target=self._every, args=(self.step,), name="neucf-upkeep", daemon=True)]
        if self.retrainer is not None:
            retrain = threading.Thread(target=self._every, args=(self._retrain,), name="neucf-retrain", daemon=True)
            self._threads.append(retrain)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the threads (a retraining in progress is stopped, and recorded as failed) and
        write what is left."""
        self._stop.set()
        if self.retrainer is not None:
            self.retrainer.cancel()
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self.service.store is not None:
            try:
                for service in (self._retired, self.service):
                    if service is not None:
                        service.flush()
            except StoreUnavailable as exc:
                log.warning("%s", exc)

    def _retrain(self) -> None:
        run = self.retrainer.step()
        if run is not None and run.status == "live":
            self.swap(run.path)

    def _every(self, work) -> None:
        # below the event loop's priority: loading a run takes a core for a second or so, and
        # the requests answered meanwhile come first (Linux gives each thread its own nice)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(self.poll):
            try:
                work()
            except Exception:  # the server keeps serving; the next look tries again
                log.exception("neucf upkeep failed; trying again in %.0f s", self.poll)
