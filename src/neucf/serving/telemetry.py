"""A server's metrics in Prometheus' text format (``GET /metrics``), through prometheus-client.

Counted by each worker and added up over the workers (prometheus-client's multiprocess mode,
which ``neucf serve --workers N`` turns on by giving each server a folder for it in
``PROMETHEUS_MULTIPROC_DIR``):

- ``neucf_requests_total{route, method, status}`` and ``neucf_request_seconds{route}`` (a
  histogram), by route template (``/users/{user}/recommendations``), never by raw path;
- ``neucf_feedback_events_total``: events stored by ``POST /feedback`` (new ones);
- ``neucf_lists_served_total``: lists given by ``GET /users/{user}/recommendations``.

Read from the feedback store at each scrape, so every worker and server agrees:

- ``neucf_online_hit_rate``: of the lists served in the last ``--window``, the share that a
  later positive event on one of their items made a hit (NaN before the first list);
- ``neucf_live_run_info{run, model, trained_at}``: the run this worker serves.

Examples:
    >>> telemetry = Telemetry()
    >>> telemetry.observe("/health", "GET", 200, 0.001)
    >>> b'neucf_requests_total{method="GET",route="/health",status="200"} 1.0' in telemetry.exposition(None)
    True
"""

from __future__ import annotations

import math
import os
import time

#: upper bounds of the latency histogram's buckets, in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """A server's counters (see the module); one per worker process."""

    def __init__(self):
        from prometheus_client import Counter, Histogram

        # registered nowhere: each scrape gathers them (in multiprocess mode, from the shared
        # folder's files, where their values live)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter("neucf_requests", "HTTP requests answered, by route template, method and status.",
                                ["route", "method", "status"], registry=None)  # fmt: skip
        self.seconds = Histogram("neucf_request_seconds", "Seconds to answer a request, by route template.",
                                 ["route"], buckets=BUCKETS, registry=None)  # fmt: skip
        self.feedback_events = Counter("neucf_feedback_events", "Feedback events stored (new ones).", registry=None)
        self.lists_served = Counter("neucf_lists_served", "Lists given to known users.", registry=None)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.seconds.labels(route).observe(seconds)

    def exposition(self, live) -> bytes:
        """Every metric in Prometheus' text format; the store's read through ``live`` (a
        :class:`~neucf.serving.live.LiveService`, or None)."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        scrape = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(scrape)
        else:
            for metric in (self.requests, self.seconds, self.feedback_events, self.lists_served):
                scrape.register(metric)
        if live is not None:
            scrape.register(_StoreCollector(live))
        return generate_latest(scrape)


class _StoreCollector:
    """The figures read from the store at each scrape, and the run served."""

    def __init__(self, live):
        self.live = live

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        service = self.live.service
        info = InfoMetricFamily("neucf_live_run", "The run this worker serves.")
        described = service.describe()
        info.add_metric([], {"run": str(described["run"]), "model": described["model"],
                             "trained_at": str(described["trained_at"])})  # fmt: skip
        yield info
        if service.store is not None:
            service.flush()
            lists, hits = service.store.hit_rate(time.time() - service.window)
            yield GaugeMetricFamily(
                "neucf_online_hit_rate",
                "Share of the lists served in the last window with a later positive event on one of their items.",
                value=hits / lists if lists else math.nan,
            )
