"""Prometheus metrics: a pure ASGI middleware counts requests by route template, method and
status (and times them); a collector reads the database at scrape time (deletion requests and jobs
by status, batch sizes, job durations by kind, cumulative ε and δ per model, messages of queued
jobs published again). Each app has its own registry (``app.state.metrics``), so tests can build
many apps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db.session import session_scope
from app.services.stats import snapshot

__all__ = ["Metrics", "MetricsMiddleware"]

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
JOB_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def _histogram(name: str, doc: str, values_by_label: dict[str, Sequence[float]],
               label: str | None, buckets: Sequence[float]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for key, values in sorted(values_by_label.items()):
        counts = [sum(1 for v in values if v <= b) for b in buckets]
        family.add_metric([key] if label else [],
                          [(floatToGoString(b), c) for b, c in zip(buckets, counts, strict=True)]
                          + [("+Inf", len(values))], sum(values))
    return family


class DatabaseCollector(Collector):
    """Figures computed from the database at each scrape."""

    def collect(self) -> Iterable[Metric]:
        try:
            with session_scope() as session:
                snap = snapshot(session)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on a busy database
            log.warning("metrics: database figures unavailable: %s", exc)
            up = GaugeMetricFamily("lethe_database_up", "1 if the last scrape read the database.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("lethe_database_up", "1 if the last scrape read the database.")
        up.add_metric([], 1)
        yield up
        requests = GaugeMetricFamily("lethe_deletion_requests", "Deletion requests by status.",
                                     labels=["status"])
        for status in ("pending", "batched", "applying", "completed", "failed", "canceled"):
            requests.add_metric([status], snap.requests_by_status.get(status, 0))
        yield requests
        jobs = GaugeMetricFamily("lethe_jobs", "Jobs by status (queued = queue depth).",
                                 labels=["status"])
        for status in ("queued", "running", "succeeded", "failed"):
            jobs.add_metric([status], snap.jobs_by_status.get(status, 0))
        yield jobs
        yield CounterMetricFamily(
            "lethe_job_redispatches", "Messages of queued jobs published again by the reaper "
            "(lost messages, or a backlog longer than LETHE_JOB_REDISPATCH_SECONDS).",
            value=snap.job_redispatches)
        yield _histogram("lethe_batch_size_samples",
                         "Samples forgotten per published unlearning batch (ledger m).",
                         {"": snap.batch_sizes} if snap.batch_sizes else {}, None,
                         BATCH_SIZE_BUCKETS)
        yield _histogram("lethe_job_duration_seconds", "Wall time of finished jobs, by kind.",
                         snap.job_durations_s, "kind", JOB_DURATION_BUCKETS)
        eps = GaugeMetricFamily("lethe_budget_epsilon_consumed",
                                "Cumulative epsilon of the model's newest release.",
                                labels=["model_id"])
        delta = GaugeMetricFamily("lethe_budget_delta_consumed",
                                  "Cumulative delta of the model's newest release.",
                                  labels=["model_id"])
        for model_id in sorted(snap.cumulative_epsilon):
            eps.add_metric([model_id], snap.cumulative_epsilon[model_id])
            delta.add_metric([model_id], snap.cumulative_delta[model_id])
        yield eps
        yield delta


class Metrics:
    """An app's registry and its request metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("lethe_http_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("lethe_http_request_duration_seconds",
                                 "HTTP request latency by route and method.", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(DatabaseCollector())


class MetricsMiddleware:
    """Counts every HTTP request under its route template (``unmatched`` for unknown paths, so a
    scanner cannot blow up the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status["code"])).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)
