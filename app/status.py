"""The file lifecycle: states, the transitions allowed between them, error codes.

Nobody writes a status string by hand: stores build their updates with
`transition()`, which refuses a move the state machine does not allow, and
which matches on the current state so that two processes racing for the same
file cannot both win.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class FileStatus(StrEnum):
    SAVING = "saving"  # bytes are being received
    QUEUED = "queued"  # stored, a job is on the queue
    PROCESSING = "processing"  # a worker has claimed it
    EMBEDDED = "embedded"  # chunks and vectors are searchable
    FAILED = "failed"  # see `error.code`
    DELETING = "deleting"  # a delete is under way; the document goes when bytes and chunks are gone


class Stage(StrEnum):
    """Where a `processing` file is within the pipeline."""

    DOWNLOAD = "download"
    PARSE = "parse"
    CHUNK = "chunk"
    EMBED = "embed"
    INDEX = "index"


FINAL = frozenset({FileStatus.EMBEDDED, FileStatus.FAILED})
# states someone is working in, under a lease (app/lease.py): the receiving request, the worker
IN_FLIGHT = frozenset({FileStatus.SAVING, FileStatus.PROCESSING})

ALLOWED: dict[FileStatus, frozenset[FileStatus]] = {
    FileStatus.SAVING: frozenset({FileStatus.QUEUED}),
    FileStatus.QUEUED: frozenset({FileStatus.PROCESSING, FileStatus.DELETING}),
    # processing -> queued hands a file back: a retry, or a lost worker's file requeued by the watchdog
    FileStatus.PROCESSING: frozenset({FileStatus.EMBEDDED, FileStatus.FAILED, FileStatus.QUEUED, FileStatus.DELETING}),
    FileStatus.EMBEDDED: frozenset({FileStatus.DELETING}),
    FileStatus.FAILED: frozenset({FileStatus.DELETING}),
    FileStatus.DELETING: frozenset(),
}
# states a file is deleted from; `saving` belongs to its upload request, which removes it itself
DELETABLE = frozenset(s for s, allowed in ALLOWED.items() if FileStatus.DELETING in allowed)


class ErrorCode(StrEnum):
    # refused at upload (HTTP 4xx); never stored on a file
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    EMPTY_FILE = "empty_file"
    TOO_MANY_FILES = "too_many_files"
    DUPLICATE = "duplicate"
    # a file that was accepted and then failed in the pipeline
    PDF_CORRUPT = "pdf_corrupt"
    PDF_ENCRYPTED = "pdf_encrypted"
    TEXT_UNDECODABLE = "text_undecodable"
    NO_TEXT = "no_text"
    BLOB_MISSING = "blob_missing"
    WORKER_LOST = "worker_lost"
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL_ERROR = "internal_error"
    # parsing: refused at upload
    CONTENT_TYPE_MISMATCH = "content_type_mismatch"
    # parsing: the file failed in the pipeline
    DOCUMENT_CORRUPT = "document_corrupt"
    ARCHIVE_TOO_LARGE = "archive_too_large"
    HTML_TOO_DEEP = "html_too_deep"
    TOO_MANY_PAGES = "too_many_pages"
    TOO_MANY_OCR_PAGES = "too_many_ocr_pages"
    TOO_MANY_CHARACTERS = "too_many_characters"
    OCR_DISABLED = "ocr_disabled"
    OCR_FAILED = "ocr_failed"
    JOB_TIMEOUT = "job_timeout"
    # why a file went back to `queued` (its `last_error`), never a final state
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.FILE_TOO_LARGE: "The file is larger than the upload limit.",
    ErrorCode.UNSUPPORTED_TYPE: "This type of file is not supported.",
    ErrorCode.EMPTY_FILE: "The file is empty.",
    ErrorCode.TOO_MANY_FILES: "Too many files in one request.",
    ErrorCode.DUPLICATE: "A file with the same content already exists.",
    ErrorCode.PDF_CORRUPT: "The PDF could not be read: it is damaged or truncated.",
    ErrorCode.PDF_ENCRYPTED: "The PDF is protected by a password.",
    ErrorCode.TEXT_UNDECODABLE: "The file is not readable text in any known encoding.",
    ErrorCode.NO_TEXT: "No text could be extracted from the file.",
    ErrorCode.BLOB_MISSING: "The stored bytes of the file are missing.",
    ErrorCode.WORKER_LOST: "The worker processing the file stopped responding too many times.",
    ErrorCode.RETRIES_EXHAUSTED: "A server the pipeline needs kept failing; the file was tried too many times.",
    ErrorCode.INTERNAL_ERROR: "An unexpected error occurred while processing the file.",
    ErrorCode.CONTENT_TYPE_MISMATCH: "The file's content does not match its name or declared content type.",
    ErrorCode.DOCUMENT_CORRUPT: "The document could not be read: it is damaged or not what its type says.",
    ErrorCode.ARCHIVE_TOO_LARGE: "The document expands to more data than allowed when unpacked.",
    ErrorCode.HTML_TOO_DEEP: "The HTML is nested too deeply to be read.",
    ErrorCode.TOO_MANY_PAGES: "The document has more pages than allowed.",
    ErrorCode.TOO_MANY_OCR_PAGES: "The document has more scanned pages than allowed for text recognition (OCR).",
    ErrorCode.TOO_MANY_CHARACTERS: "The document has more text than allowed.",
    ErrorCode.OCR_DISABLED: "The document has only scanned pages, and text recognition (OCR) is turned off.",
    ErrorCode.OCR_FAILED: "Text recognition (OCR) of a scanned page failed.",
    ErrorCode.JOB_TIMEOUT: "Processing the file took longer than the job's time limit.",
    ErrorCode.DEPENDENCY_UNAVAILABLE: "A server the pipeline needs was unavailable; the file will be tried again.",
}


class PipelineError(Exception):
    """A failure caused by the file itself: the file ends `failed` with this code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        super().__init__(f"{code}: {self.message}")


def now() -> datetime:
    return datetime.now(UTC)


def transition(
    current: FileStatus | frozenset[FileStatus], new: FileStatus, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (filter, update) pair that moves a file from `current` (one state or a set) to `new`.

    Combine the filter with the file's `_id`; the update applies only if the
    file is still in `current`, which makes every transition a compare-and-set.
    """
    currents = current if isinstance(current, frozenset) else frozenset({current})
    for c in currents:
        if new not in ALLOWED[c]:
            raise ValueError(f"transition {c} -> {new} is not allowed")
    stamp = now()
    update: dict[str, Any] = {"$set": {"status": new.value, "updated_at": stamp, **fields}}
    if new is FileStatus.PROCESSING:
        update["$inc"] = {"attempts": 1}  # the claim's fencing token (app/fencing.py)
        update["$set"].update(started_at=stamp, error=None)
    if new not in IN_FLIGHT:
        update["$set"].setdefault("lease", None)  # nobody is working on it (app/lease.py)
    if new in FINAL:
        update["$set"]["finished_at"] = stamp
        update["$set"].setdefault("stage", None)
    if len(currents) == 1:
        return {"status": next(iter(currents)).value}, update
    return {"status": {"$in": sorted(c.value for c in currents)}}, update


def error_doc(code: ErrorCode, message: str | None = None) -> dict[str, str]:
    return {"code": code.value, "message": message or MESSAGES[code]}
