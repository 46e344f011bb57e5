"""The worker's Prometheus metrics and the job observer that records them.

Each RQ worker process serves its own metrics (stages, pages, chunks, tokens, outcomes,
failures) on `WORKER_METRICS_PORT` (`start_worker_metrics_server`); Prometheus scrapes
every worker and sums. Workers run on other hosts and containers than the API: there is
no directory they could share (the API's metrics are app/observability/api_metrics.py).

`JobObserver` times a job's stages, counts what the job did and writes the stage and job
log lines; `timed_stage` charges a function's time to the stage of the job being run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter, Histogram, disable_created_metrics

from app.observability.logs import log_context

log = logging.getLogger("app.metrics")  # the logger these lines have always had
stage_log = logging.getLogger("worker.stages")

disable_created_metrics()  # no `_created` series beside each counter and histogram

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)


STAGES = ("download", "parse", "ocr", "chunk", "embed", "index")
OUTCOMES = ("embedded", "failed", "retried", "cancelled", "skipped", "error")


@dataclass(frozen=True)
class WorkerMetrics:
    files: Counter
    stage_seconds: Histogram
    job_seconds: Histogram
    pages: Counter
    ocr_pages: Counter
    chunks: Counter
    tokens: Counter
    failures: Counter


@lru_cache
def worker_metrics() -> WorkerMetrics:
    m = WorkerMetrics(
        files=Counter(
            "docproc_files_processed",
            "Jobs finished by a worker, by outcome: embedded, failed, retried (handed back after a transient "
            "error), cancelled (deleted while processing), skipped (not queued: a duplicate job), error.",
            ["outcome"],
        ),
        stage_seconds=Histogram(
            "docproc_stage_seconds",
            "Time a file spent in a pipeline stage (download, parse, ocr, chunk, embed, index); parse excludes "
            "OCR, chunk excludes parsing.",
            ["stage"],
            buckets=STAGE_BUCKETS,
        ),
        job_seconds=Histogram(
            "docproc_job_seconds",
            "Time a job took from claim to its outcome.",
            ["outcome"],
            buckets=JOB_BUCKETS,
        ),
        pages=Counter("docproc_pages", "Pages (PDF pages, PPTX slides) of the files embedded."),
        ocr_pages=Counter("docproc_ocr_pages", "Pages read by OCR in the files embedded."),
        chunks=Counter("docproc_chunks", "Chunks indexed for the files embedded."),
        tokens=Counter(
            "docproc_embedded_tokens", "Tokens (model word pieces, [CLS]/[SEP] included) of the chunks embedded."
        ),
        failures=Counter("docproc_failures", "Files that ended failed, by error code.", ["code"]),
    )
    for stage in STAGES:  # every series exists from the start, at zero
        m.stage_seconds.labels(stage)
    for outcome in OUTCOMES:
        m.files.labels(outcome)
    return m


# --- exposition: this process's own registry on its port ------------------------------------

_worker_server: Any = None


def start_worker_metrics_server(port: int, addr: str = "0.0.0.0") -> int | None:
    """Serve this process's metrics on `port` (once per process); 0 turns it off.

    A port already taken is logged, not fatal: losing metrics must not stop ingestion.
    Returns the port served, or None.
    """
    global _worker_server
    worker_metrics()
    if _worker_server is not None:
        return _worker_server.server_address[1]
    if port <= 0:
        return None
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=addr)
    except OSError as exc:
        log.warning("worker metrics: cannot listen on port %d (%s); metrics are not served", port, exc)
        return None
    _worker_server = server
    # RQ forks its scheduler from the worker: the child must not hold the listening socket, or a
    # restarted worker could not bind it while an orphaned scheduler lives
    os.register_at_fork(after_in_child=server.socket.close)
    log.info("worker metrics on http://%s:%d/metrics", addr, port, extra={"metrics_port": port})
    return port


# --- a job's stages, counts and log lines (worker side) -----------------------------------

_observer: ContextVar[JobObserver | None] = ContextVar("job_observer", default=None)
P = ParamSpec("P")
R = TypeVar("R")


def error_label(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return str(getattr(code, "value", code)) if code is not None else type(exc).__name__


class JobObserver:
    """Times one job's stages and records its outcome: metrics, and one log line per stage and per job.

    Stages nest and their times are exclusive: OCR inside parsing inside chunking (the
    chunker pulls elements from the parser, which OCRs pages as it goes) is counted as
    ocr, parse and chunk time, each without the others. When the job ends, each stage it
    entered is observed once (its total time in this job) and logged, `failed` with the
    error code (or the exception's name) when an exception went through it, then the job's
    own line is logged.
    """

    def __init__(self, file_id: str, request_id: str | None = None) -> None:
        self.file_id = file_id
        self.request_id = request_id
        self.metrics = worker_metrics()
        self.spent: dict[str, float] = defaultdict(float)
        self.errors: dict[str, str] = {}
        self.stack: list[str] = []
        self.mark = time.perf_counter()
        self.started = time.perf_counter()
        self.finished = False
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> JobObserver:
        self._exit.enter_context(log_context(request_id=self.request_id, file_id=self.file_id))
        token = _observer.set(self)
        self._exit.callback(_observer.reset, token)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if not self.finished:
                self.finish("error", error_label(exc) if exc is not None else None)
        finally:
            self._exit.close()

    def _charge(self) -> None:
        now = time.perf_counter()
        if self.stack:
            self.spent[self.stack[-1]] += now - self.mark
        self.mark = now

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        stage = str(stage)  # app.status.Stage members are str enums
        self._charge()
        self.stack.append(stage)
        try:
            yield
        except BaseException as exc:
            self.errors.setdefault(stage, error_label(exc))
            raise
        finally:
            self._charge()
            self.stack.pop()

    def timed(self, stage: str, items: Iterable[R]) -> Iterator[R]:
        """`items`, with the time spent producing each one charged to `stage`."""
        it = iter(items)
        try:
            while True:
                with self.stage(stage):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _flush(self) -> None:
        try:
            for stage, seconds in self.spent.items():
                error = self.errors.get(stage)
                outcome = "failed" if error else "ok"
                self.metrics.stage_seconds.labels(stage).observe(seconds)
                stage_log.info(
                    "file %s stage %s %s in %.1f ms",
                    self.file_id,
                    stage,
                    outcome,
                    seconds * 1000,
                    extra={
                        "event": "stage",
                        "file_id": self.file_id,
                        "stage": stage,
                        "duration_ms": round(seconds * 1000, 1),
                        "outcome": outcome,
                        **({"error": error} if error else {}),
                    },
                )
        except Exception:
            log.warning("stage metrics failed", exc_info=True)
        self.spent.clear()
        self.errors.clear()

    def finish(
        self,
        outcome: str,
        code: Any = None,
        *,
        pages: int = 0,
        ocr_pages: int = 0,
        chunks: int = 0,
        tokens: int = 0,
    ) -> None:
        """Record the job's outcome (once): counters, the job histogram and the job's log line."""
        if self.finished:
            return
        self.finished = True
        self._flush()
        try:
            code = str(getattr(code, "value", code)) if code is not None else None
            seconds = time.perf_counter() - self.started
            m = self.metrics
            m.files.labels(outcome).inc()
            m.job_seconds.labels(outcome).observe(seconds)
            if outcome == "failed" and code:
                m.failures.labels(code).inc()
            if outcome == "embedded":
                m.pages.inc(pages)
                m.ocr_pages.inc(ocr_pages)
                m.chunks.inc(chunks)
                m.tokens.inc(tokens)
            counts = {"pages": pages, "ocr_pages": ocr_pages, "chunks": chunks, "tokens": tokens}
            stage_log.info(
                "file %s %s in %.1f ms%s",
                self.file_id,
                outcome,
                seconds * 1000,
                f" ({code})" if code else "",
                extra={
                    "event": "job",
                    "file_id": self.file_id,
                    "outcome": outcome,
                    **({"code": code} if code else {}),
                    "duration_ms": round(seconds * 1000, 1),
                    **(counts if outcome == "embedded" else {}),
                },
            )
        except Exception:
            log.warning("job metrics failed", exc_info=True)


def timed_stage(stage: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function whose time belongs to `stage` of the job being run (if any)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            observer = _observer.get()
            if observer is None:
                return fn(*args, **kwargs)
            with observer.stage(stage):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
