"""The HTTP API's request and response bodies (pydantic models), by endpoint group: files and
uploads, search, answers, admin (keys and audit). Their class names are the OpenAPI schema's
component names."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.answering.answer import Answer, Plan
from app.api.auth import Scope
from app.intake.receiver import IncomingFile
from app.retrieval.filters import Filters
from app.retrieval.params import Mode
from app.retrieval.search import Hit
from app.status import FileStatus, Stage
from app.stores.audit import Action
from app.stores.storable import storable

# --- files and uploads ------------------------------------------------------------------------


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

    @classmethod
    def from_incoming(cls, f: IncomingFile) -> "UploadedFile":
        """A received file, or the existing one it repeats (`duplicate_of`)."""
        file_id = f.duplicate_of or f.file_id
        return cls(
            file_id=file_id,
            filename=f.filename,
            content_type=f.content_type or "",
            size=f.size,
            sha256=f.sha256,
            status=FileStatus(f.duplicate_status) if f.duplicate_of else FileStatus.QUEUED,
            status_url=f"/files/{file_id}",
            duplicate_of=f.duplicate_of,
        )


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


# --- search ----------------------------------------------------------------------------------


def _no_nul(text: str) -> str:
    if not storable(text):
        raise ValueError("the query may not contain NUL characters or invalid Unicode")
    return text


QueryText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), AfterValidator(_no_nul)
]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: QueryText
    k: int = Field(5, ge=1, strict=True, description="results wanted, at most QUERY_MAX_K")
    mode: Mode = Field("hybrid", description="vector (meaning), keyword (words), hybrid (both, fused)")
    filters: Filters | None = None
    highlight: bool = Field(False, strict=True, description="add `highlights`: matched words in <mark>, HTML-escaped")
    vector_weight: float | None = Field(
        None, ge=0, le=100, strict=True, allow_inf_nan=False, description="hybrid: default HYBRID_VECTOR_WEIGHT"
    )
    keyword_weight: float | None = Field(
        None, ge=0, le=100, strict=True, allow_inf_nan=False, description="hybrid: default HYBRID_KEYWORD_WEIGHT"
    )


class SearchHit(BaseModel):
    text: str
    score: float = Field(description="vector: cosine similarity; keyword: ts_rank; hybrid: fused RRF score")
    chunk_id: int
    file_id: str
    filename: str
    content_type: str
    chunk_index: int
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    highlights: list[str] | None = None

    @classmethod
    def from_hit(cls, hit: Hit, **extra: Any) -> "SearchHit":
        return cls(**{name: getattr(hit, name) for name in SearchHit.model_fields}, **extra)


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    results: list[SearchHit]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000), AfterValidator(_no_nul)
    ]
    stream: bool = Field(False, strict=True, description="stream the answer as server-sent events")


class GenerateResponse(BaseModel):
    query: str
    answer: str
    generator: Literal["llm"] = "llm"
    model: str
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


class ContextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: QueryText
    k: int = Field(5, ge=1, strict=True, description="passages retrieved, at most QUERY_MAX_K")
    mode: Mode = "hybrid"
    filters: Filters | None = None
    stream: bool = Field(False, strict=True, description="stream the answer as server-sent events")


class Passage(SearchHit):
    n: int = Field(description="the passage's number in the prompt and in citations, from 1")


class Citation(BaseModel):
    n: int
    chunk_id: int
    file_id: str
    filename: str
    page_start: int | None
    page_end: int | None


class ContextAnswer(BaseModel):
    query: str
    answer: str
    generator: Literal["llm", "extractive"]
    model: str | None = None
    citations: list[Citation]
    passages: list[Passage]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


def numbered_passages(plan: Plan) -> list[Passage]:
    """The plan's passages with their numbers, from 1, as in the prompt and the citations."""
    return [Passage.from_hit(h, n=n) for n, h in enumerate(plan.passages or [], start=1)]


def context_answer(plan: Plan, result: Answer) -> ContextAnswer:
    """The answer with its citations and passages (POST /generate-text-with-context, MCP `ask`)."""
    passages = numbered_passages(plan)
    by_n = {p.n: p for p in passages}
    citations = [
        Citation(
            n=n, chunk_id=p.chunk_id, file_id=p.file_id, filename=p.filename, page_start=p.page_start,
            page_end=p.page_end,
        )
        for n in result.citations
        if (p := by_n.get(n)) is not None
    ]  # fmt: skip
    return ContextAnswer(
        query=plan.query,
        answer=result.text,
        generator=result.generator,
        model=result.model,
        citations=citations,
        passages=passages,
        latency_ms=plan.record.latency_ms,
        interaction_id=plan.record.id,
    )


class ContextError(BaseModel):
    """An LLM failure of POST /generate-text-with-context (502, 504): the error, and what was retrieved."""

    detail: dict[str, str]
    query: str
    generator: Literal["llm"] = "llm"
    passages: list[Passage]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


# --- admin: API keys and the audit log ---------------------------------------------------------


KeyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field(description="what the key is for")
    scopes: list[Scope] = Field(["read"], min_length=1, max_length=3, description="read, write, admin")


class KeyOut(BaseModel):
    key_id: str
    tenant: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict) -> "KeyOut":
        return cls(key_id=doc["_id"], **{k: v for k, v in doc.items() if k in cls.model_fields})


class KeyCreated(KeyOut):
    key: str = Field(description="the API key: shown only in this response, never again")


class KeyList(BaseModel):
    items: list[KeyOut]


class AuditEntry(BaseModel):
    id: str
    tenant: str
    action: Action
    key_id: str = Field(description="the key created or revoked")
    actor: str = Field(description="the id of the API key that acted, or `cli` (python -m app.keys)")
    request_id: str | None = Field(None, description="the request's X-Request-ID (none from the CLI)")
    time: datetime

    @classmethod
    def from_doc(cls, doc: dict) -> "AuditEntry":
        return cls(id=doc["_id"], **{k: v for k, v in doc.items() if k in cls.model_fields})


class AuditList(BaseModel):
    items: list[AuditEntry]
    total: int
    limit: int
    offset: int
