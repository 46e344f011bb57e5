"""The API's Prometheus metrics: what the API counts, and how `GET /metrics` exposes it.

- The API serves `GET /metrics` (app/api/routes/ops.py). Under gunicorn its workers are separate
  processes, so prometheus-client runs in multiprocess mode: each process writes its
  counters to memory-mapped files in `PROMETHEUS_MULTIPROC_DIR` and a scrape, answered
  by any one of them, adds up the files of all. The variable must be set before
  prometheus_client is first imported, which app/gunicorn_conf.py does in gunicorn's
  master (a fresh directory per start). Without it (a single uvicorn process, the tests)
  the process's own registry is served.
- The gauges read from MongoDB and RQ (files by status, queue depth, workers, failed
  jobs) are computed when /metrics is scraped, by the serving process only, and cached
  for `METRICS_CACHE_S` (`StoreGauges`).

Each RQ worker serves metrics of its own (worker/metrics.py): workers run on other hosts
and containers than the API, with no directory they could share.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from app.settings import Settings
    from app.stores import Stores

log = logging.getLogger("app.metrics")

disable_created_metrics()  # no `_created` series beside each counter and histogram


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- the API's own metrics -----------------------------------------------------------------

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class ApiMetrics:
    requests: Counter
    latency: Histogram
    in_progress: Gauge
    upload_bytes: Counter


@lru_cache
def api_metrics() -> ApiMetrics:
    """Created on first use, so a worker process does not export the API's series (and vice versa)."""
    return ApiMetrics(
        requests=Counter(
            "docproc_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
        ),
        latency=Histogram(
            "docproc_http_request_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        ),
        in_progress=Gauge(
            "docproc_http_requests_in_progress",
            "HTTP requests being answered now.",
            multiprocess_mode="livesum",
        ),
        upload_bytes=Counter(
            "docproc_upload_bytes",
            "Request body bytes received by POST /upload (multipart framing included), whatever the outcome.",
        ),
    )


# --- exposition ------------------------------------------------------------------------------


class _Chain:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c.collect()


def render_api_metrics(*extra: Any) -> bytes:
    """The text exposition of the API's metrics: every process's (multiprocess mode) or this one's."""
    path = multiprocess_dir()
    if path:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(_Chain(registry, *extra))  # type: ignore[arg-type]
    return generate_latest(_Chain(REGISTRY, *extra))  # type: ignore[arg-type]


# --- gauges computed from MongoDB and RQ when scraped --------------------------------------


class StoreGauges:
    """Files by status, failed files by code, and per RQ queue: depth, running, scheduled and
    failed jobs, and live workers; computed at most once every `cache_s` seconds per process."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self.families: list[Metric] = []
        self.at = float("-inf")
        self.lock = anyio.Lock()

    def collect(self) -> Iterator[Metric]:
        yield from self.families

    async def refresh(self, stores: Stores, settings: Settings) -> None:
        if time.monotonic() - self.at < self.cache_s:
            return
        async with self.lock:
            if time.monotonic() - self.at < self.cache_s:
                return
            families: list[Metric] = []
            up = GaugeMetricFamily(
                "docproc_metrics_source_up",
                "1 when the source of the gauges beside it answered at the last refresh, else 0.",
                labels=["source"],
            )
            timeout = max(settings.dependency_timeout_s * 3, 1.0)
            try:
                with anyio.fail_after(timeout):
                    families += await _file_families(stores)
                up.add_metric(["mongodb"], 1)
            except Exception as exc:  # noqa: BLE001 - a scrape must answer even when MongoDB does not
                log.warning("metrics: MongoDB gauges unavailable: %s", type(exc).__name__)
                up.add_metric(["mongodb"], 0)
            try:
                with anyio.fail_after(timeout):
                    families += await anyio.to_thread.run_sync(_queue_families, stores.jobs, abandon_on_cancel=True)
                up.add_metric(["valkey"], 1)
            except Exception as exc:  # noqa: BLE001 - as above, for Valkey
                log.warning("metrics: RQ gauges unavailable: %s", type(exc).__name__)
                up.add_metric(["valkey"], 0)
            self.families = [*families, up]
            self.at = time.monotonic()


async def _file_families(stores: Stores) -> list[Metric]:
    from app.status import FileStatus

    col = stores.files.col
    by_status = GaugeMetricFamily("docproc_files", "Files by status (from MongoDB).", labels=["status"])
    for status in FileStatus:
        by_status.add_metric([status.value], await col.count_documents({"status": status.value}))
    failed = GaugeMetricFamily(
        "docproc_failed_files", "Files in status failed, by error code (from MongoDB).", labels=["code"]
    )
    pipeline = [{"$match": {"status": FileStatus.FAILED.value}}, {"$group": {"_id": "$error.code", "n": {"$sum": 1}}}]
    async for row in await col.aggregate(pipeline):
        failed.add_metric([str(row["_id"] or "unknown")], row["n"])
    return [by_status, failed]


def _queue_families(jobs: Any) -> list[Metric]:
    from rq import Queue, Worker
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    conn = jobs.connection
    names = {q.name for q in Queue.all(connection=conn)} | {jobs.queue.name}
    depth = GaugeMetricFamily("docproc_queue_depth", "Jobs waiting in an RQ queue.", labels=["queue"])
    started = GaugeMetricFamily("docproc_started_jobs", "Jobs being run by a worker.", labels=["queue"])
    scheduled = GaugeMetricFamily(
        "docproc_scheduled_jobs", "Jobs waiting for a retry (RQ's scheduled registry).", labels=["queue"]
    )
    failed = GaugeMetricFamily(
        "docproc_failed_jobs", "Jobs in RQ's failed-job registry (they raised; kept 7 days).", labels=["queue"]
    )
    workers = GaugeMetricFamily("docproc_workers", "Live RQ workers listening on a queue.", labels=["queue"])
    for name in sorted(names):
        queue = Queue(name, connection=conn)
        depth.add_metric([name], queue.count)
        started.add_metric([name], StartedJobRegistry(queue=queue).count)
        scheduled.add_metric([name], ScheduledJobRegistry(queue=queue).count)
        failed.add_metric([name], FailedJobRegistry(queue=queue).count)
        workers.add_metric([name], len(Worker.all(queue=queue)))
    return [depth, started, scheduled, failed, workers]
