"""gunicorn settings for the API: `gunicorn -c python:app.gunicorn_conf "app.main:create_app()" ...`.

Prometheus multiprocess mode: gunicorn's workers are separate processes, so each writes
its metrics to memory-mapped files in `PROMETHEUS_MULTIPROC_DIR` and `GET /metrics`
(answered by any worker) adds them all up (app/observability/api_metrics.py). The variable is set
here, in the master, before any worker imports prometheus_client: the given directory, or a new
temporary one. It is emptied when gunicorn starts, so one run's counts never add to the
next run's; a worker that exits has its live gauges dropped. gunicorn's own log lines go
through the service's formatter (JSON with LOG_FORMAT=json).

Command-line flags override what is set here.
"""

import os
import shutil
import tempfile
from pathlib import Path

from app.settings import get_settings

_owned_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _owned_dir = tempfile.mkdtemp(prefix="docproc-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_dir

_settings = get_settings()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "app.observability.logs.ContextFilter", "service": "api"}},
    "formatters": {
        "service": {"()": "app.observability.logs.JsonFormatter"}
        if _settings.log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "service",
            "filters": ["context"],
            "stream": "ext://sys.stderr",
        }
    },
    # the app installs its own root handler (app.observability.logs.setup_logging) in each worker
    "root": {"level": _settings.log_level.upper(), "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        # one line per request comes from the app's middleware (logger app.access)
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's Arbiter
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    server.log.info("prometheus multiprocess directory %s", path)


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's Arbiter and Worker
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:  # noqa: ANN001 - gunicorn's Arbiter
    if _owned_dir:
        shutil.rmtree(_owned_dir, ignore_errors=True)
