"""RQ entry points. `process_file(file_id)` takes one file from queued to a final state."""

import logging
from contextlib import ExitStack
from typing import Any

import numpy as np
import psycopg
import pymongo.errors
import redis.exceptions
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from app import lease
from app.fencing import Claim, StaleClaim
from app.status import ErrorCode, PipelineError, Stage, error_doc
from app.stores.chunks.writer import ChunkRow
from worker.heartbeat import Heartbeat
from worker.metrics import JobObserver
from worker.parsing import parse
from worker.resources import Resources, resources

log = logging.getLogger("worker.jobs")

EMBED_BATCH = 256  # chunks between progress updates and cancellation checks


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        pymongo.errors.ConnectionFailure,
        psycopg.OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    ]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError

        errors.append(BotoConnectionError)
    except ImportError:
        pass
    return tuple(errors)


TRANSIENT = _transient_errors()


class FileGone(Exception):
    """The file was deleted or taken back while the job ran: stop. Nothing to clean up: a delete and
    the watchdog's takeover fence the file's chunks off (app/fencing.py), removing what we wrote."""


def process_file(file_id: str) -> dict[str, Any]:
    """Parse, chunk, embed and index one file.

    The claim (queued -> processing) is atomic: a duplicate job, or a job for a
    file that is already final, deleting or deleted, does nothing. Every write the
    job makes afterwards carries the claim's fencing token, so a job that was paused
    past its lease and woke up after the file was handed to another worker writes
    nothing. A failure caused by the file ends it `failed` with a stable code and no
    chunks. A failure of a server the pipeline needs hands the file back to `queued`
    and re-raises, so RQ retries the job with backoff; after `MAX_ATTEMPTS` the file
    is `failed` (retries_exhausted).
    """
    with JobObserver(file_id, _request_id()) as obs:  # stage timings, counters, log lines; no effect on the job
        r = resources()
        s = r.settings
        claimed = r.files.claim(file_id, lease.owner_id(f"job:{file_id}"), s.heartbeat_timeout_s)
        if claimed is None:
            log.info("file %s is not queued (duplicate job, final or deleted): skipped", file_id)
            obs.finish("skipped")
            return {"file_id": file_id, "skipped": True}
        claim, doc = claimed
        with Heartbeat(r.files, claim, s.heartbeat_interval_s, s.heartbeat_timeout_s) as beat:
            try:
                return _run(r, claim, doc, beat, obs)
            except (FileGone, StaleClaim):
                log.info("file %s was deleted or taken back while processing (claim %d): stopped", file_id, claim.token)
                obs.finish("cancelled")
                return {"file_id": file_id, "skipped": True}
            except PipelineError as exc:
                log.info("file %s failed: %s", file_id, exc)
                return _fail(r, claim, obs, exc.code, exc.message)
            except FileNotFoundError:
                return _fail(r, claim, obs, ErrorCode.BLOB_MISSING)
            except JobTimeoutException:
                log.warning("file %s: the job hit its timeout", file_id)
                return _fail(r, claim, obs, ErrorCode.JOB_TIMEOUT, _timeout_message())
            except TRANSIENT as exc:
                server = _server(exc)
                # the detail (host names, driver text) is for the log; the file's status says which server
                log.warning("file %s: transient failure (%s): %s: %s", file_id, server, type(exc).__name__, exc)
                if doc["attempts"] >= s.max_attempts:
                    message = f"{server} kept failing; gave up after {doc['attempts']} attempts."
                    return _fail(r, claim, obs, ErrorCode.RETRIES_EXHAUSTED, message)
                last_error = error_doc(
                    ErrorCode.DEPENDENCY_UNAVAILABLE, f"{server} was unavailable; the file will be tried again."
                )
                r.files.hand_back(claim, last_error)  # if this fails too, the watchdog requeues when the lease expires
                obs.finish("retried", type(exc).__name__)
                raise
            except Exception:
                log.exception("file %s: unexpected error", file_id)
                return _fail(r, claim, obs, ErrorCode.INTERNAL_ERROR)


def _fail(r: Resources, claim: Claim, obs: JobObserver, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    """End the file `failed`, with none of its chunks left in search.

    The chunks go first (fenced: a stale claim removes nothing). If PostgreSQL is away, the
    file is still failed, marked `chunks_purged: false`, and the watchdog removes them later.
    """
    try:
        r.chunks.fence_off(claim.file_id, claim.token)
        purged = True
    except StaleClaim:
        purged = True  # another claim owns the file; our `fail` below matches nothing either
    except TRANSIENT:
        log.warning("file %s: chunks not removed yet; the watchdog will", claim.file_id, exc_info=True)
        purged = False
    r.files.fail(claim, code, message, chunks_purged=purged)
    obs.finish("failed", code)
    return {"file_id": claim.file_id, "status": "failed", "code": code.value}


SERVERS = {"pymongo": "MongoDB", "psycopg": "PostgreSQL", "redis": "Valkey", "botocore": "Object storage"}


def _server(exc: BaseException) -> str:
    """Which server a transient error came from, by the module of its exception type."""
    return SERVERS.get(type(exc).__module__.split(".")[0], "A server the pipeline needs")


def _timeout_message() -> str:
    job = get_current_job()
    limit = f"{job.timeout} s" if job is not None and job.timeout else "its time limit"
    return (
        f"Processing the file took longer than {limit}, the job's time limit for a file of this size "
        "(JOB_TIMEOUT_BASE_S plus JOB_TIMEOUT_PER_MB_S per MB, at most JOB_TIMEOUT_MAX_S)."
    )


def _request_id() -> str | None:
    """The id of the upload request that queued this job (RQ job meta), for the job's log lines."""
    job = get_current_job()
    return job.meta.get("request_id") if job is not None else None


def _checkpoint(r: Resources, beat: Heartbeat, claim: Claim, stage: Stage, **progress: Any) -> None:
    if beat.lost.is_set() or not r.files.set_stage(claim, stage, **progress):
        raise FileGone(claim.file_id)


def _run(r: Resources, claim: Claim, doc: dict[str, Any], beat: Heartbeat, obs: JobObserver) -> dict[str, Any]:
    with ExitStack() as local:
        with obs.stage(Stage.DOWNLOAD):
            path = local.enter_context(r.blobs.local_copy(doc["storage_key"]))
        _checkpoint(r, beat, claim, Stage.PARSE)
        with obs.stage(Stage.PARSE):
            parsed = parse(path, doc["content_type"])
        with obs.stage(Stage.CHUNK):  # the time spent pulling elements (and OCR) is the parse (ocr) stage's
            chunks = r.chunker.chunk(obs.timed(Stage.PARSE, parsed.elements))  # page by page
    if not chunks:
        raise PipelineError(ErrorCode.NO_TEXT)
    _checkpoint(r, beat, claim, Stage.EMBED, pages=parsed.page_count, chunks=len(chunks), chunks_embedded=0)
    parts = []
    with obs.stage(Stage.EMBED):
        for start in range(0, len(chunks), EMBED_BATCH):
            parts.append(r.embedder.embed([c.text for c in chunks[start : start + EMBED_BATCH]]))
            done = min(start + EMBED_BATCH, len(chunks))
            _checkpoint(r, beat, claim, Stage.EMBED, chunks_embedded=done)
        vectors = np.vstack(parts)
    _checkpoint(r, beat, claim, Stage.INDEX)
    with obs.stage(Stage.INDEX):
        rows = [
            ChunkRow(
                ordinal=i,
                text=c.text,
                page_start=c.page_start,
                page_end=c.page_end,
                heading_path=list(c.heading_path),
                kinds=list(c.kinds),
            )
            for i, c in enumerate(chunks)
        ]
        r.chunks.replace(claim, doc, rows, vectors)
    stats = {f"parse_{k}": v for k, v in parsed.stats.items()}
    if not r.files.finish(
        claim, chunk_count=len(rows), page_count=parsed.page_count, embedder=r.embedder.name, **stats
    ):
        raise FileGone(claim.file_id)  # deleted or taken back while we indexed: its fence removes our chunks
    obs.finish(
        "embedded",
        pages=parsed.page_count or 0,
        ocr_pages=parsed.stats.get("pages_ocr", 0),
        chunks=len(rows),
        tokens=sum(c.tokens for c in chunks),
    )
    return {"file_id": claim.file_id, "status": "embedded", "chunks": len(rows)}
