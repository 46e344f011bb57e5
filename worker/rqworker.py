"""The RQ worker class: `rq worker --worker-class worker.rqworker.IngestWorker`.

Jobs run inside the worker process (RQ's SimpleWorker) rather than in a forked
child per job: the embedding model then loads once per process instead of once
per file, and torch's thread pools are never inherited across a fork. A job
that crashes the process is handled like a killed worker: supervisord (or the
Auto Scaling group) starts a new one.

Before the first job the worker sets up its logging (JSON lines, optional GELF:
app/observability/logs.py; RQ's own lines go the same way) and serves its Prometheus metrics on
`WORKER_METRICS_PORT` (worker/metrics.py), then connects and loads the model.
"""

import logging
from typing import Any

from rq.logutils import ColorizingStreamHandler
from rq.worker import SimpleWorker

from app import scratch
from app.observability.logs import setup_logging
from app.settings import get_settings
from worker.metrics import start_worker_metrics_server
from worker.resources import resources


class IngestWorker(SimpleWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        settings = get_settings()
        setup_logging(settings, "worker")
        _route_rq_logs_through_ours()
        start_worker_metrics_server(settings.worker_metrics_port)
        scratch.sweep(scratch.root(settings))  # what a killed process left behind
        resources()  # connect and load the model before taking the first job
        return super().work(*args, **kwargs)


def _route_rq_logs_through_ours() -> None:
    """`rq worker` gives its loggers coloured text handlers before the worker exists: drop
    them, so RQ's lines go through the root handlers (JSON, GELF) like everyone else's."""
    for name in ("rq.worker", "rq.job", "rq.scheduler"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, ColorizingStreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
