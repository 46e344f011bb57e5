"""RQ entry points. `process_file(file_id)` takes one file from queued to a final state."""

import logging
from typing import Any

from app.status import ErrorCode, PipelineError, Stage
from app.stores.chunks import ChunkRow
from worker.parsing import parse
from worker.resources import resources

log = logging.getLogger("worker.jobs")


def process_file(file_id: str) -> dict[str, Any]:
    """Parse, chunk, embed and index one file.

    The claim (queued -> processing) is atomic: a duplicate job, or a job for a
    file that is already final or deleted, does nothing. A failure caused by the
    file ends it `failed` with a stable code; the worker goes on with the next job.
    """
    r = resources()
    doc = r.files.claim(file_id)
    if doc is None:
        log.info("file %s is not queued (duplicate job, final or deleted): skipped", file_id)
        return {"file_id": file_id, "skipped": True}
    try:
        result = _run(r, doc)
    except PipelineError as exc:
        log.info("file %s failed: %s", file_id, exc)
        r.files.fail(file_id, exc.code, exc.message)
        return {"file_id": file_id, "status": "failed", "code": exc.code.value}
    except FileNotFoundError:
        r.files.fail(file_id, ErrorCode.BLOB_MISSING)
        return {"file_id": file_id, "status": "failed", "code": ErrorCode.BLOB_MISSING.value}
    except Exception:
        log.exception("file %s: unexpected error", file_id)
        r.files.fail(file_id, ErrorCode.INTERNAL_ERROR)
        return {"file_id": file_id, "status": "failed", "code": ErrorCode.INTERNAL_ERROR.value}
    return result


def _run(r: Any, doc: dict[str, Any]) -> dict[str, Any]:
    file_id = doc["_id"]
    with r.blobs.local_copy(doc["storage_key"]) as path:
        r.files.set_stage(file_id, Stage.PARSE)
        parsed = parse(path, doc["content_type"])
        chunks = r.chunker.chunk(parsed.elements)  # consumes the element stream page by page
    if not chunks:
        raise PipelineError(ErrorCode.NO_TEXT)
    r.files.set_stage(file_id, Stage.EMBED, pages=parsed.page_count, chunks=len(chunks))
    vectors = r.embedder.embed([c.text for c in chunks])
    r.files.set_stage(file_id, Stage.INDEX)
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
    if not r.files.finish(file_id, chunk_count=len(rows), page_count=parsed.page_count, embedder=r.embedder.name):
        # deleted (or otherwise moved on) while we worked: leave no chunks behind
        r.chunks.delete_file(file_id)
        return {"file_id": file_id, "skipped": True}
    return {"file_id": file_id, "status": "embedded", "chunks": len(rows)}
