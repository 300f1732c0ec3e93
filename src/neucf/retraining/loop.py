"""Retraining on a schedule, for a server: when a retraining is due, one at a time across
workers and servers, in a separate process at a lower CPU priority, and whether its run goes
live.

A retraining is due when ``every`` seconds have passed since the last one began (or since the
server's first run went live), or when ``after`` events were stored since; whichever comes
first. The worker that takes the store's ``retrain`` lock (a lease it renews while the
retraining runs: one that dies loses it within ``LEASE_S``) trains ``neucf retrain`` of the live
run into ``runs_dir/run-<UTC time>``, at ``nice`` 10. The new run goes live when its score on
the held-out events is not worse than the live run's by more than ``tolerance``, relative (RMSE
at most 2% above by default; NDCG@10 at most 2% below); with no held-out event (no user has 2
stored events) there is nothing to judge and it goes live. A retraining that fails leaves the
live run serving, is recorded as ``failed`` with its one-line reason, and the next due one tries
again. Then every run folder of ``runs_dir`` past the ``keep`` newest, the live one aside, is
deleted.

Examples:
    >>> parse_duration("30m"), parse_duration("6h"), parse_duration("1d"), parse_duration("90")
    (1800.0, 21600.0, 86400.0, 90.0)
    >>> judge({"new": {"rmse": 0.90}, "live": {"rmse": 0.89}}, tolerance=0.02)
    (True, 'RMSE 0.9000 against the live run 0.8900 (tolerance 2%)')
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UsageError
from ..feedback import FeedbackStore
from ..feedback.store import RunRecord
from ..runs import read_json

log = logging.getLogger(__name__)

#: the store lock a retraining holds
LOCK = "retrain"
#: how long the lock lasts unless renewed (the holder renews it a few times within)
LEASE_S = 60.0
#: the CPU priority of a retraining process (``nice``): the server's requests come first
NICE = 10
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration: a number with an optional unit ``s``, ``m``, ``h`` or ``d``
    (``90``, ``30m``, ``6h``); anything else is a :class:`~neucf.errors.UsageError`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match or float(match[1]) <= 0:
        raise UsageError(f"{text!r} is not a duration; write e.g. 90s, 30m, 6h or 1d")
    return float(match[1]) * _UNITS[match[2] or "s"]


@dataclass(frozen=True)
class Policy:
    """When to retrain and what to keep (see the module): ``every`` seconds and/or ``after``
    events, a new run going live within ``tolerance`` (relative) of the live run's score,
    ``keep`` run folders in ``runs_dir``."""

    runs_dir: Path
    every: float | None = None
    after: int | None = None
    tolerance: float = 0.02
    keep: int = 3

    @property
    def retrains(self) -> bool:
        """Whether this policy ever retrains (else the server only follows the live run)."""
        return self.every is not None or self.after is not None


def judge(scores: dict, tolerance: float) -> tuple[bool, str]:
    """Whether a retrained run goes live, from its ``metrics.json`` ``retrain`` part, and why."""
    new, live = scores["new"], scores["live"]
    metric = "rmse" if "rmse" in new else next(k for k in new if k != "n")
    if new[metric] is None or live[metric] is None:
        return True, "no held-out event to judge on (no user has 2 stored events)"
    a, b = new[metric], live[metric]
    ok = a <= b * (1 + tolerance) if metric == "rmse" else a >= b * (1 - tolerance)
    return ok, f"{metric.upper()} {a:.4f} against the live run {b:.4f} (tolerance {tolerance:.0%})"


def trained_at(run_dir: str | Path) -> float:
    """When a run was written (its ``config.json``, the last file written)."""
    return (Path(run_dir) / "config.json").stat().st_mtime


def due(store: FeedbackStore, policy: Policy, now: float | None = None) -> bool:
    """Whether a retraining is due (see the module)."""
    runs = store.runs()
    if not policy.retrains or not runs:
        return False
    last = runs[-1]
    now = time.time() if now is None else now
    if policy.every is not None and now - last.started_at >= policy.every:
        return True
    return policy.after is not None and store.events_since(last.batch) >= policy.after


def _retrain_child(live: str, store: str, out: str, errors) -> None:
    """The retraining process: lower priority, then :func:`~neucf.retraining.retrain`; its
    failure goes back as one line."""
    from .core import retrain

    os.nice(NICE)
    logging.basicConfig(level=logging.WARNING, format="neucf retrain: %(message)s")
    try:
        retrain(live, store, out)
    except BaseException as exc:  # every failure is one line for the server's log
        errors.send(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise SystemExit(1) from None


class Retrainer:
    """The retraining side of one server process (see the module): :meth:`step` retrains when
    due and this process gets the lock; returns the run it recorded, else None."""

    def __init__(self, store: FeedbackStore, policy: Policy):
        self.store, self.policy = store, policy
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._child = None
        self.cancelled = False  # set by cancel(); a server that starts again clears it

    def cancel(self) -> None:
        """Stop a retraining in progress (the server is stopping): it is recorded as failed."""
        self.cancelled = True
        child = self._child
        if child is not None and child.is_alive():
            child.terminate()

    def step(self) -> RunRecord | None:
        """Retrain once if due and this process gets the lock."""
        if not due(self.store, self.policy) or not self.store.take_lock(LOCK, self.holder, LEASE_S):
            return None
        try:
            if not due(self.store, self.policy):  # another process retrained while we looked
                return None
            return self.retrain()
        finally:
            self.store.release_lock(LOCK, self.holder)

    def retrain(self) -> RunRecord:
        """Retrain the live run now (the caller holds the lock), judge it and record it."""
        live = self.store.live_run()
        if live is None:
            raise UsageError("the store has no live run to retrain")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        out = Path(self.policy.runs_dir) / f"run-{stamp}"
        seq = self.store.start_run(str(out.resolve()), self.store.last_batch())
        error = self._train(live.path, out)
        if error is not None:
            log.warning("retraining of %s failed, the live run keeps serving: %s", live.path, error)
            self.store.finish_run(seq, "failed", {"error": error})
            shutil.rmtree(out, ignore_errors=True)
        else:
            scores = read_json(out / "metrics.json")["retrain"]
            ok, why = judge(scores, self.policy.tolerance)
            self.store.finish_run(seq, "live" if ok else "rejected", {**scores, "judged": why}, trained_at(out))
            log.info("retrained %s into %s: %s; %s", live.path, out, why, "live now" if ok else "kept out")
        prune(self.store, self.policy)
        return next(r for r in self.store.runs() if r.seq == seq)

    def _train(self, live: str, out: Path) -> str | None:
        """Run the retraining process, renewing the lock while it works; its failure in a line."""
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_retrain_child, args=(live, self.store.url, str(out), send), daemon=True)
        if self.cancelled:
            return "the server stopped"
        self._child = child
        child.start()
        send.close()
        while child.is_alive():
            child.join(LEASE_S / 4)
            self.store.take_lock(LOCK, self.holder, LEASE_S)
        self._child = None
        if child.exitcode == 0:
            return None
        if self.cancelled:
            return "the server stopped during the retraining"
        if receive.poll():
            return receive.recv()
        if child.exitcode < 0:
            return f"the retraining process was killed (signal {-child.exitcode})"
        return f"the retraining process exited with status {child.exitcode}"


def prune(store: FeedbackStore, policy: Policy) -> list[Path]:
    """Delete the run folders of ``policy.runs_dir`` past the ``keep`` newest, never the live
    one (nor one being written); returns those deleted."""
    folder = Path(policy.runs_dir)
    live = store.live_run()
    keep_path = None if live is None else Path(live.path).resolve()
    runs = sorted((p for p in folder.glob("run-*") if (p / "config.json").is_file()), key=lambda p: p.name)
    doomed = [p for p in runs[: max(len(runs) - policy.keep, 0)] if p.resolve() != keep_path]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def rollback(store: FeedbackStore, run_dir: str | Path) -> RunRecord:
    """Make the run at ``run_dir`` live (every server following the store swaps to it);
    refused (a :class:`~neucf.errors.UsageError`) for a folder that is not a run and for a run
    trained before the store's newest erasure, which learnt from an erased user."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir}: not a run folder (no config.json); was it pruned? see --keep")
    when, erased = trained_at(run_dir), store.last_erasure()
    if erased is not None and when < erased:
        raise UsageError(
            f"{run_dir} was trained before the store's newest erasure, so it learnt from an erased "
            "user; make a later run live, or retrain"
        )
    store.make_live(str(run_dir), when, store.last_batch())
    return store.live_run()
