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

from app.metrics import JobObserver
from app.status import ErrorCode, FileStatus, PipelineError, Stage
from app.stores.chunks import ChunkRow
from worker.heartbeat import Heartbeat
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
        JobTimeoutException,
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
    """The file was deleted or taken back while the job ran: stop, leave nothing behind."""


def process_file(file_id: str) -> dict[str, Any]:
    """Parse, chunk, embed and index one file.

    The claim (queued -> processing) is atomic: a duplicate job, or a job for a
    file that is already final, deleting or deleted, does nothing. A failure caused
    by the file ends it `failed` with a stable code. A failure of a server the
    pipeline needs hands the file back to `queued` and re-raises, so RQ retries the
    job with backoff; after `MAX_ATTEMPTS` the file is `failed` (retries_exhausted).
    """
    with JobObserver(file_id, _request_id()) as obs:  # stage timings, counters, log lines; no effect on the job
        r = resources()
        doc = r.files.claim(file_id)
        if doc is None:
            log.info("file %s is not queued (duplicate job, final or deleted): skipped", file_id)
            obs.finish("skipped")
            return {"file_id": file_id, "skipped": True}
        with Heartbeat(r.files, file_id, r.settings.heartbeat_interval_s) as beat:
            try:
                return _run(r, doc, beat, obs)
            except FileGone:
                now_doc = r.files.get(file_id)
                if now_doc is None or now_doc["status"] == FileStatus.DELETING.value:
                    r.chunks.delete_file(file_id)  # requeued instead: the next run replaces our chunks
                log.info("file %s was deleted or taken back while processing: stopped", file_id)
                obs.finish("cancelled")
                return {"file_id": file_id, "skipped": True}
            except PipelineError as exc:
                log.info("file %s failed: %s", file_id, exc)
                r.files.fail(file_id, exc.code, exc.message)
                obs.finish("failed", exc.code)
                return {"file_id": file_id, "status": "failed", "code": exc.code.value}
            except FileNotFoundError:
                r.files.fail(file_id, ErrorCode.BLOB_MISSING)
                obs.finish("failed", ErrorCode.BLOB_MISSING)
                return {"file_id": file_id, "status": "failed", "code": ErrorCode.BLOB_MISSING.value}
            except TRANSIENT as exc:
                last_error = f"{type(exc).__name__}: {exc}"[:500]
                if doc["attempts"] >= r.settings.max_attempts:
                    message = f"Gave up after {doc['attempts']} attempts: {last_error}"
                    r.files.fail(file_id, ErrorCode.RETRIES_EXHAUSTED, message)
                    obs.finish("failed", ErrorCode.RETRIES_EXHAUSTED)
                    return {"file_id": file_id, "status": "failed", "code": ErrorCode.RETRIES_EXHAUSTED.value}
                log.warning("file %s: transient failure, handing back for a retry: %s", file_id, last_error)
                r.files.hand_back(file_id, last_error)  # if this fails too, the watchdog requeues on the heartbeat
                obs.finish("retried", type(exc).__name__)
                raise
            except Exception:
                log.exception("file %s: unexpected error", file_id)
                r.files.fail(file_id, ErrorCode.INTERNAL_ERROR)
                obs.finish("failed", ErrorCode.INTERNAL_ERROR)
                return {"file_id": file_id, "status": "failed", "code": ErrorCode.INTERNAL_ERROR.value}


def _request_id() -> str | None:
    """The id of the upload request that queued this job (RQ job meta), for the job's log lines."""
    job = get_current_job()
    return job.meta.get("request_id") if job is not None else None


def _checkpoint(r: Resources, beat: Heartbeat, file_id: str, stage: Stage, **progress: Any) -> None:
    if beat.lost.is_set() or not r.files.set_stage(file_id, stage, **progress):
        raise FileGone(file_id)


def _run(r: Resources, doc: dict[str, Any], beat: Heartbeat, obs: JobObserver) -> dict[str, Any]:
    file_id = doc["_id"]
    with ExitStack() as local:
        with obs.stage(Stage.DOWNLOAD):
            path = local.enter_context(r.blobs.local_copy(doc["storage_key"]))
        _checkpoint(r, beat, file_id, Stage.PARSE)
        with obs.stage(Stage.PARSE):
            parsed = parse(path, doc["content_type"])
        with obs.stage(Stage.CHUNK):  # the time spent pulling elements (and OCR) is the parse (ocr) stage's
            chunks = r.chunker.chunk(obs.timed(Stage.PARSE, parsed.elements))  # page by page
    if not chunks:
        raise PipelineError(ErrorCode.NO_TEXT)
    _checkpoint(r, beat, file_id, Stage.EMBED, pages=parsed.page_count, chunks=len(chunks), chunks_embedded=0)
    parts = []
    with obs.stage(Stage.EMBED):
        for start in range(0, len(chunks), EMBED_BATCH):
            parts.append(r.embedder.embed([c.text for c in chunks[start : start + EMBED_BATCH]]))
            done = min(start + EMBED_BATCH, len(chunks))
            _checkpoint(r, beat, file_id, Stage.EMBED, chunks_embedded=done)
        vectors = np.vstack(parts)
    _checkpoint(r, beat, file_id, Stage.INDEX)
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
        r.chunks.replace(doc, rows, vectors)
    stats = {f"parse_{k}": v for k, v in parsed.stats.items()}
    if not r.files.finish(
        file_id, chunk_count=len(rows), page_count=parsed.page_count, embedder=r.embedder.name, **stats
    ):
        raise FileGone(file_id)  # deleted (or requeued) while we indexed: leave no chunks behind
    obs.finish(
        "embedded",
        pages=parsed.page_count or 0,
        ocr_pages=parsed.stats.get("pages_ocr", 0),
        chunks=len(rows),
        tokens=sum(c.tokens for c in chunks),
    )
    return {"file_id": file_id, "status": "embedded", "chunks": len(rows)}
