"""Request and response bodies of the HTTP API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.status import FileStatus, Stage


class ErrorInfo(BaseModel):
    code: str
    message: str


LEGACY_LAST_ERROR = ErrorInfo(code="dependency_unavailable", message="A transient failure; the file was tried again.")


class FileOut(BaseModel):
    file_id: str
    filename: str
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    status: FileStatus
    stage: Stage | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    attempts: int = 0
    last_error: ErrorInfo | None = None  # why the latest retry happened: a server away, a lost worker
    page_count: int | None = None
    chunk_count: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)  # from the upload; search filters match it
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "FileOut":
        fields = {k: v for k, v in doc.items() if k in cls.model_fields}
        if isinstance(fields.get("last_error"), str):  # stored before it was scrubbed: may name hosts
            fields["last_error"] = LEGACY_LAST_ERROR
        return cls(file_id=doc["_id"], **fields)


class UploadedFile(BaseModel):
    file_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    status: FileStatus
    status_url: str
    duplicate_of: str | None = None  # set when DEDUP=return_existing answered with an existing file


class UploadResponse(BaseModel):
    files: list[UploadedFile]


class FileList(BaseModel):
    items: list[FileOut]
    total: int
    limit: int
    offset: int


class TenantStats(BaseModel):
    tenant: str
    files: dict[str, int] = Field(description="files by status (every status, 0 included)")
    failed: dict[str, int] = Field(description="failed files by error code")
    pending: int = Field(description="files saving, queued or processing")
    max_pending: int = Field(description="MAX_PENDING_FILES_PER_TENANT: uploads beyond it are refused (429)")
