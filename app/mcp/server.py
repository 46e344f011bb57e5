"""The MCP server mounted in the API at `/mcp`: search, answers and the tenant's documents as Model
Context Protocol tools and resources, over streamable HTTP (the official `mcp` SDK).

- Stateless, answers as JSON: any API process (gunicorn worker, host) answers any request, with no
  session to find; a client's `initialize` and each call are independent requests.
- Authentication at the transport: every request presents an API key as for every other endpoint
  (`Authorization: Bearer dp_…` or `X-API-Key`); a missing, unknown or revoked key is answered 401
  `unauthorized` before the MCP layer reads a byte. The key's tenant scopes every tool, as the
  HTTP routes do: `read` for the read tools, `write` for `upload_document` and `delete_document`;
  `search` and `ask` count against QUERY_RATE, `upload_document` against UPLOAD_RATE.
- A tool that fails returns an MCP tool error (`isError: true`) whose text is `code: message`, the
  code the HTTP API gives for the same failure (`forbidden`, `file_not_found`, `rate_limited`,
  `k_too_large`, `unsupported_type`, ...); never a host, path or driver message.
- Documents are also resources, `docproc://documents/{id}`, whose content is their indexed text.
- With AUTH=disabled (loopback only) the SDK's DNS-rebinding protection is on: a browser page
  cannot reach the keyless MCP endpoint through a hostile DNS name.

Every tool calls the services the HTTP routes call (app/retrieval, app/answering via
app/mcp/answer.py, app/intake, app/stores); nothing here imports a router.
"""

import base64
import binascii
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import pymongo.errors
from fastapi import FastAPI
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ResourceError, ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, Resource, TextContent
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import lease
from app.api import errors
from app.api.auth import UNAUTHORIZED, Principal, presented_key, principal_for
from app.api.auth import Scope as KeyScope
from app.api.schemas import ContextAnswer, FileList, FileOut, QueryText, SearchHit, UploadedFile
from app.intake.memory import upload_request
from app.intake.receiver import Receiver
from app.intake.removal import remove
from app.mcp.answer import answer
from app.retrieval.filters import Filters
from app.retrieval.params import Mode, search_params
from app.retrieval.search import retrieve
from app.settings import Settings
from app.status import FileStatus

log = logging.getLogger("app.mcp")
M = TypeVar("M", bound=BaseModel)

PATH = "/mcp"
RESOURCE_URI = "docproc://documents/{document_id}"
RESOURCE_MAX_CHARS = 2_000_000  # a document's text as a resource, at most; get_chunks pages through the rest
RESOURCES_LISTED = 100  # resources/list: the tenant's newest embedded documents

INSTRUCTIONS = (
    "docproc holds this API key's tenant's documents (PDF, Word, PowerPoint, HTML, Markdown, text), parsed, "
    "chunked and indexed. Use `search` to find passages, `ask` for an answer with numbered citations, "
    "`list_documents` / `get_document` / `get_chunks` to browse, `upload_document` and `delete_document` "
    "(write scope) to change them. Errors are `code: message`."
)


class ToolFailure(Exception):
    """A tool refused: its stable code and message."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"{code}: {message}")


# --- what tools return ---------------------------------------------------------------------------


class SearchOut(BaseModel):
    query: str
    mode: Mode
    results: list[SearchHit]


class ChunkOut(BaseModel):
    chunk_id: int
    chunk_index: int
    text: str
    page_start: int | None
    page_end: int | None
    heading_path: list[str]


class ChunksOut(BaseModel):
    document_id: str
    chunks: list[ChunkOut]
    total: int = Field(description="the document's chunks in all")
    limit: int
    offset: int


class Deleted(BaseModel):
    document_id: str
    deleted: bool = True


# --- the call: who, and what it may do -----------------------------------------------------------


@dataclass
class Call:
    """One tool call: the caller (from the transport's key check) and the API's state (stores, settings)."""

    principal: Principal
    state: Any
    request: Request

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def settings(self) -> Settings:
        return self.state.settings


async def _begin(ctx: Context, scope: KeyScope, limit: str | None) -> Call:
    request = ctx.request_context.request
    if not isinstance(request, Request) or "principal" not in request.scope.get("state", {}):
        raise ToolFailure("unauthorized", UNAUTHORIZED)  # only KeyAuth's requests reach a tool
    principal: Principal = request.scope["state"]["principal"]
    if not principal.has(scope):
        raise ToolFailure("forbidden", f"This API key lacks the {scope!r} scope.")
    state = request.app.state
    if limit is not None:
        await state.limiter.check(limit, principal.key_id)  # 429 as HTTPException: rate_limited
    return Call(principal, state, request)


def failure(exc: Exception) -> tuple[str, str] | None:
    """(code, message) for what a tool may meet, as the HTTP API would answer it; None: not the caller's."""
    if isinstance(exc, ToolFailure):
        return exc.code, exc.message
    if isinstance(exc, HTTPException) and isinstance(exc.detail, dict):
        return str(exc.detail.get("code", "error")), str(exc.detail.get("message", ""))
    if isinstance(exc, ValidationError):
        return "invalid_request", "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()) or "Invalid."
    refused = errors.describe(exc)  # as the HTTP API answers it
    return (str(refused.code), refused.message) if refused is not None else None


async def run(ctx: Context, scope: KeyScope, body: Callable[[Call], Awaitable[M]], limit: str | None = None) -> M:
    """Run a tool's `body` for an authorised caller: its model (the structured content), or ToolFailure."""
    try:
        return await body(await _begin(ctx, scope, limit))
    except ToolFailure:
        raise
    except Exception as exc:
        described = failure(exc)
        if described is None:
            log.exception("MCP tool failed")
            described = ("internal_error", "The tool failed on the server; the error was logged.")
        raise ToolFailure(*described) from exc


def error_result(exc: ToolError) -> CallToolResult:
    """A failed call as the tool error a client reads: `code: message`, the API's code for the failure."""
    cause = exc.__cause__
    if isinstance(cause, ToolFailure):
        code, message = cause.code, cause.message
    elif isinstance(cause, ValidationError):  # the arguments, checked against the tool's schema
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in cause.errors()]
        code, message = "invalid_request", "; ".join(parts)
    else:
        code, message = "invalid_request", str(exc)  # an unknown tool
    return CallToolResult(isError=True, content=[TextContent(type="text", text=f"{code}: {message}")])


async def _document(call: Call, document_id: uuid.UUID) -> dict[str, Any]:
    doc = await call.state.stores.files.get(call.tenant, str(document_id))
    if doc is None:
        raise ToolFailure("file_not_found", f"No document {document_id}.")
    return doc


# --- the server ----------------------------------------------------------------------------------


DocumentId = Annotated[uuid.UUID, Field(description="a document's id (file_id), as search and list_documents give")]
K = Annotated[int, Field(ge=1, description="how many passages, at most QUERY_MAX_K (100)")]
MODE = Annotated[Mode, Field(description="hybrid (meaning and words, the default), vector (meaning), keyword (words)")]
FILTERS = Annotated[
    Filters | None,
    Field(description="restrict to documents: file_ids, content_types, filename glob, upload dates, metadata"),
]


class DocprocMCP(FastMCP):
    """FastMCP with tool errors as `code: message`, and the caller's documents listed as resources."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            return error_result(exc)

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        request = self.get_context().request_context.request
        principal: Principal | None = request.scope.get("state", {}).get("principal") if request else None
        if principal is None or not principal.has("read"):
            return listed
        docs, _ = await request.app.state.stores.files.list(principal.tenant, FileStatus.EMBEDDED, RESOURCES_LISTED, 0)
        return listed + [
            Resource(
                uri=RESOURCE_URI.format(document_id=d["_id"]),  # type: ignore[arg-type]
                name=d["filename"],
                description=f"the indexed text of {d['filename']} ({d.get('chunk_count') or 0} chunks)",
                mimeType="text/plain",
            )
            for d in docs
        ]


def build(settings: Settings) -> DocprocMCP:
    """The MCP server: its tools and resources (the transport is added by `mount`)."""
    open_loopback = settings.auth == "disabled"
    mcp = DocprocMCP(
        name="docproc",
        instructions=INSTRUCTIONS,
        stateless_http=True,
        json_response=True,
        streamable_http_path=PATH,
        log_level="WARNING",
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=open_loopback,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ),
    )

    @mcp.tool(
        title="Search documents",
        description="The passages (chunks) of the tenant's documents that best match `query`: by meaning and "
        "words (`hybrid`, the default), meaning only (`vector`) or words only (`keyword`), optionally restricted "
        "by `filters`. Each result has its text, score, document id, filename, pages and metadata.",
    )
    async def search(
        query: Annotated[QueryText, Field(description="what to look for, in plain words")],
        ctx: Context,
        k: K = 5,
        mode: MODE = "hybrid",
        filters: FILTERS = None,
    ) -> SearchOut:
        async def body(call: Call) -> SearchOut:
            params = search_params(call.settings, query, mode, k, filters)
            retrieval = await retrieve(call.state.stores.chunks, call.state.query_embedder, call.tenant, params)
            return SearchOut(query=query, mode=mode, results=[SearchHit.from_hit(h) for h in retrieval.hits])

        return await run(ctx, "read", body, limit="query")

    @mcp.tool(
        title="Ask a question",
        description="An answer to `question` from the tenant's documents, with numbered `citations` (passage "
        "number, document, pages) and the `passages` it was drawn from. With an LLM configured the answer is "
        "the LLM's; without one it is extractive (the passages' best-matching sentences).",
    )
    async def ask(
        question: Annotated[QueryText, Field(description="the question")],
        ctx: Context,
        k: K = 5,
        mode: MODE = "hybrid",
        filters: FILTERS = None,
    ) -> ContextAnswer:
        async def body(call: Call) -> ContextAnswer:
            return await answer(call.state, call.tenant, question, k, mode, filters)

        return await run(ctx, "read", body, limit="query")

    @mcp.tool(
        title="List documents",
        description="The tenant's documents, newest first, with their processing status (saving, queued, "
        "processing, embedded, failed, deleting): optionally only one `status`, or filenames matching the glob "
        "`name` (`report-*.pdf`, any case); paged by `limit` and `offset`, with the `total`.",
    )
    async def list_documents(
        ctx: Context,
        status: FileStatus | None = None,
        name: Annotated[str | None, Field(min_length=1, max_length=500, description="a filename glob")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0,
    ) -> FileList:
        async def body(call: Call) -> FileList:
            docs, total = await call.state.stores.files.list(call.tenant, status, limit, offset, name)
            return FileList(items=[FileOut.from_doc(d) for d in docs], total=total, limit=limit, offset=offset)

        return await run(ctx, "read", body)

    @mcp.tool(
        title="Get a document",
        description="One document's status and metadata: status and stage, error code when it failed, page "
        "and chunk counts, size, SHA-256, upload metadata, timestamps.",
    )
    async def get_document(document_id: DocumentId, ctx: Context) -> FileOut:
        async def body(call: Call) -> FileOut:
            return FileOut.from_doc(await _document(call, document_id))

        return await run(ctx, "read", body)

    @mcp.tool(
        title="Get a document's text",
        description="A document's indexed text, chunk by chunk in document order (each with its pages and "
        "headings), paged by `limit` and `offset`, with the `total` number of chunks.",
    )
    async def get_chunks(
        document_id: DocumentId,
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0,
    ) -> ChunksOut:
        async def body(call: Call) -> ChunksOut:
            await _document(call, document_id)
            rows, total = await call.state.stores.chunks.file_chunks(call.tenant, str(document_id), limit, offset)
            chunks = [
                ChunkOut(
                    chunk_id=r["id"],
                    chunk_index=r["ordinal"],
                    text=r["text"],
                    page_start=r["page_start"],
                    page_end=r["page_end"],
                    heading_path=list(r["heading_path"] or []),
                )
                for r in rows
            ]
            return ChunksOut(document_id=str(document_id), chunks=chunks, total=total, limit=limit, offset=offset)

        return await run(ctx, "read", body)

    @mcp.tool(
        title="Upload a document",
        description="Upload one document: its file `name` (the extension helps tell the type) and its bytes "
        "as base64 in `content_base64` (at most MCP_MAX_UPLOAD_BYTES, 10 MB, decoded), with optional "
        "`metadata` (a JSON object of strings, numbers, booleans or arrays of those; search filters match "
        "it). Returns at once with the document id and status `queued` (or the existing document when the "
        "same content is already here); poll get_document until `embedded`. Needs the write scope.",
    )
    async def upload_document(
        name: Annotated[str, Field(min_length=1, max_length=255, description="the file name, e.g. report.pdf")],
        content_base64: Annotated[str, Field(min_length=1, description="the file's bytes, base64-encoded")],
        ctx: Context,
        metadata: Annotated[dict[str, Any] | None, Field(description="stored on the document and its chunks")] = None,
    ) -> UploadedFile:
        async def body(call: Call) -> UploadedFile:
            limit = min(call.settings.mcp_max_upload_bytes, call.settings.max_upload_bytes)
            if len(content_base64) > 4 * math.ceil(limit / 3) + 4:
                raise ToolFailure("file_too_large", f"The document is larger than the limit of {limit} bytes.")
            try:
                content = base64.b64decode(content_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ToolFailure(errors.ApiError.INVALID_CONTENT, "content_base64 is not valid base64.") from exc
            if len(content) > limit:
                raise ToolFailure("file_too_large", f"The document is larger than the limit of {limit} bytes.")
            request_id = call.request.scope.get("state", {}).get("request_id")
            incoming = upload_request(name, content, metadata, request_id)
            owner = lease.owner_id(f"mcp:{request_id or ''}")
            receiver = Receiver(incoming, call.tenant, call.state.stores, call.settings, owner)
            return UploadedFile.from_incoming((await receiver.accept())[0])

        return await run(ctx, "write", body, limit="upload")

    @mcp.tool(
        title="Delete a document",
        description="Delete a document: its stored bytes, its chunks and its status; it stops being found at "
        "once. Needs the write scope.",
    )
    async def delete_document(document_id: DocumentId, ctx: Context) -> Deleted:
        async def body(call: Call) -> Deleted:
            await remove(call.state.stores, call.tenant, str(document_id))
            return Deleted(document_id=str(document_id))

        return await run(ctx, "write", body)

    @mcp.resource(
        RESOURCE_URI,
        name="document",
        title="A document's indexed text",
        description="The indexed text of one of the tenant's documents, its chunks in order.",
        mime_type="text/plain",
    )
    async def document_text(document_id: str, ctx: Context) -> str:
        try:
            call = await _begin(ctx, "read", None)
            doc_id = str(uuid.UUID(document_id))
            if await call.state.stores.files.get(call.tenant, doc_id) is None:
                raise ToolFailure("file_not_found", f"No document {document_id}.")
            parts: list[str] = []
            size, offset = 0, 0
            while size < RESOURCE_MAX_CHARS:
                rows, _ = await call.state.stores.chunks.file_chunks(call.tenant, doc_id, 500, offset)
                parts += [r["text"] for r in rows]
                size += sum(len(r["text"]) + 2 for r in rows)
                offset += len(rows)
                if len(rows) < 500:
                    break
        except ValueError as exc:
            raise ResourceError(f"invalid_file_id: {document_id!r} is not a document id.") from exc
        except Exception as exc:
            described = failure(exc)
            if described is None:
                log.exception("MCP resource failed")
                described = ("internal_error", "Reading the resource failed on the server; the error was logged.")
            raise ResourceError(f"{described[0]}: {described[1]}") from exc
        return "\n\n".join(parts)[:RESOURCE_MAX_CHARS]

    return mcp


# --- the transport: the key check, then the SDK's session manager -------------------------------


class KeyAuth:
    """ASGI: the API key checked before the MCP transport runs; the caller kept in `scope["state"]`."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.api.state
        try:
            principal = await principal_for(state.settings, state.stores.keys, presented_key(Headers(scope=scope)))
        except pymongo.errors.ConnectionFailure:
            detail = {"code": "dependency_unavailable", "message": "MongoDB is unavailable; retry later."}
            await JSONResponse({"detail": detail}, 503, headers={"Retry-After": "5"})(scope, receive, send)
            return
        if principal is None:
            detail = {"code": "unauthorized", "message": UNAUTHORIZED}
            await JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def mount(api: FastAPI, settings: Settings) -> StreamableHTTPSessionManager:
    """Serve MCP at /mcp in `api`; the session manager must run while the API does (its lifespan)."""
    server = build(settings)
    server.streamable_http_app()  # makes the session manager (stateless, JSON answers); its routes are unused
    manager = server.session_manager

    async def transport(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    api.add_route(PATH, KeyAuth(transport, api), include_in_schema=False)
    return manager
