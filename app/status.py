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


class Stage(StrEnum):
    """Where a `processing` file is within the pipeline."""

    DOWNLOAD = "download"
    PARSE = "parse"
    CHUNK = "chunk"
    EMBED = "embed"
    INDEX = "index"


FINAL = frozenset({FileStatus.EMBEDDED, FileStatus.FAILED})

ALLOWED: dict[FileStatus, frozenset[FileStatus]] = {
    FileStatus.SAVING: frozenset({FileStatus.QUEUED}),
    FileStatus.QUEUED: frozenset({FileStatus.PROCESSING}),
    # processing -> queued hands a file back (a retry or a worker shutting down).
    FileStatus.PROCESSING: frozenset({FileStatus.EMBEDDED, FileStatus.FAILED, FileStatus.QUEUED}),
    FileStatus.EMBEDDED: frozenset(),
    FileStatus.FAILED: frozenset(),
}


class ErrorCode(StrEnum):
    # refused at upload (HTTP 4xx); never stored on a file
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    EMPTY_FILE = "empty_file"
    TOO_MANY_FILES = "too_many_files"
    # a file that was accepted and then failed in the pipeline
    PDF_CORRUPT = "pdf_corrupt"
    PDF_ENCRYPTED = "pdf_encrypted"
    TEXT_UNDECODABLE = "text_undecodable"
    NO_TEXT = "no_text"
    BLOB_MISSING = "blob_missing"
    INTERNAL_ERROR = "internal_error"


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.FILE_TOO_LARGE: "The file is larger than the upload limit.",
    ErrorCode.UNSUPPORTED_TYPE: "This type of file is not supported.",
    ErrorCode.EMPTY_FILE: "The file is empty.",
    ErrorCode.TOO_MANY_FILES: "Too many files in one request.",
    ErrorCode.PDF_CORRUPT: "The PDF could not be read: it is damaged or truncated.",
    ErrorCode.PDF_ENCRYPTED: "The PDF is protected by a password.",
    ErrorCode.TEXT_UNDECODABLE: "The file is not readable text in any known encoding.",
    ErrorCode.NO_TEXT: "No text could be extracted from the file.",
    ErrorCode.BLOB_MISSING: "The stored bytes of the file are missing.",
    ErrorCode.INTERNAL_ERROR: "An unexpected error occurred while processing the file.",
}


class PipelineError(Exception):
    """A failure caused by the file itself: the file ends `failed` with this code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        super().__init__(f"{code}: {self.message}")


def now() -> datetime:
    return datetime.now(UTC)


def transition(current: FileStatus, new: FileStatus, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (filter, update) pair that moves a file from `current` to `new`.

    Combine the filter with the file's `_id`; the update applies only if the
    file is still in `current`, which makes every transition a compare-and-set.
    """
    if new not in ALLOWED[current]:
        raise ValueError(f"transition {current} -> {new} is not allowed")
    stamp = now()
    update: dict[str, Any] = {"$set": {"status": new.value, "updated_at": stamp, **fields}}
    if new is FileStatus.PROCESSING:
        update["$inc"] = {"attempts": 1}
        update["$set"].update(started_at=stamp, error=None)
    if new in FINAL:
        update["$set"]["finished_at"] = stamp
        update["$set"].setdefault("stage", None)
    return {"status": current.value}, update


def error_doc(code: ErrorCode, message: str | None = None) -> dict[str, str]:
    return {"code": code.value, "message": message or MESSAGES[code]}
