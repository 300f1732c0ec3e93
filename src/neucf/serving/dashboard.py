"""The figures of a server's dashboard (``GET /dashboard``), drawn from the feedback store with
matplotlib's object API as SVG: events stored per hour, the online hit rate of the lists served
each hour, the time those lists took (mean and longest), and each retrained run's score on the
held-out events against the live run's, with when each run went live.

Examples:
    >>> from neucf.feedback import FeedbackStore
    >>> figures = dashboard(FeedbackStore("sqlite://"), days=1)
    >>> sorted(figures["figures"]), figures["figures"]["events"].startswith("<?xml")
    (['events', 'hit_rate', 'latency', 'runs'], True)
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone

from ..feedback import FeedbackStore


def dashboard(store: FeedbackStore, days: float = 7.0) -> dict:
    """The dashboard's figures (SVG text by name) and its figures in numbers, over the last
    ``days``."""
    since = time.time() - days * 86_400
    activity = store.activity(since)
    runs = store.runs()
    lists = activity["lists"]
    figures = {
        "events": _figure("Events stored per hour", "events",
                          [(x["at"], x["events"]) for x in activity["events"]], bars=True),
        "hit_rate": _figure("Online hit rate of the lists served each hour", "hit rate",
                            [(x["at"], x["hits"] / x["lists"]) for x in lists]),
        "latency": _figure("Time to answer a list", "milliseconds",
                           [(x["at"], 1000 * x["mean_s"]) for x in lists],
                           [(x["at"], 1000 * x["max_s"]) for x in lists], labels=("mean", "longest")),
        "runs": _runs_figure(runs),
    }  # fmt: skip
    total_lists = sum(x["lists"] for x in lists)
    return {
        "figures": figures,
        "events": sum(x["events"] for x in activity["events"]),
        "lists": total_lists,
        "hits": sum(x["hits"] for x in lists),
        "runs": [
            {"run": r.path, "status": r.status, "started_at": r.started_at, "trained_at": r.trained_at,
             "live_since": r.live_since, "judged": r.scores.get("judged") or r.scores.get("error")}
            for r in runs
        ],
    }  # fmt: skip


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _svg(fig) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg")
    return out.getvalue()


def _new_figure(title: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _figure(title: str, ylabel: str, points, second=None, labels=None, bars=False) -> str:
    fig, ax = _new_figure(title, ylabel)
    if not points:
        ax.text(0.5, 0.5, "nothing yet", ha="center", va="center", transform=ax.transAxes, color="grey")
        return _svg(fig)
    x, y = [_when(t) for t, _ in points], [v for _, v in points]
    if bars:
        ax.bar(x, y, width=1 / 24, align="edge")
    else:
        ax.plot(x, y, marker="o", label=None if labels is None else labels[0])
    if second:
        ax.plot([_when(t) for t, _ in second], [v for _, v in second], marker=".", label=labels[1])
    if labels:
        ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _svg(fig)


def _runs_figure(runs) -> str:
    judged = [r for r in runs if r.trained_at is not None and isinstance(r.scores.get("new"), dict)]
    metric = next((k for r in judged for k in r.scores["new"] if k != "n"), None)
    fig, ax = _new_figure(f"Runs on the held-out events ({(metric or 'score').upper()})", metric or "score")
    for r in runs:
        if r.live_since is not None:
            ax.axvline(_when(r.live_since), color="green", alpha=0.4, linewidth=1)
    points = [(r, r.scores["new"].get(metric), r.scores["live"].get(metric)) for r in judged]
    points = [(r, new, live) for r, new, live in points if new is not None and live is not None]
    if points:
        x = [_when(r.trained_at) for r, _, _ in points]
        ax.plot(x, [new for _, new, _ in points], "o", label="retrained run")
        ax.plot(x, [live for _, _, live in points], "x", label="live run then")
        ax.legend(fontsize=8)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no judged run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    return _svg(fig)
