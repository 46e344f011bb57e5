"""Every HTTP error of the API: its code (`ApiError`), its body `{"detail": {"code": ..., "message": ...}}`,
and `install(app)`, the one place that turns exceptions into responses.

- Routes and dependencies refuse a request with `http_error(status, ApiError.X, message)`.
- Services and stores raise their own exceptions (an upload refused, a body cut short, a key in
  use, a server away ...); `install` maps each to its status and code (`UPLOAD_REFUSALS`,
  `DEPENDENCY_ERRORS`, the handlers below).
- Validation errors (FastAPI's and pydantic's) and Starlette's own 400/404/405 get a code too
  (`describe_errors`, `FRAMEWORK_CODES`).

`responses(...)` documents the errors in the OpenAPI schema (so clients, and the schema-based
fuzzing of tests/integration/api/test_fuzz.py, know every status an operation may answer and its body). The README's
"Error codes" table lists every `ApiError` (a test holds the two together).
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
import psycopg_pool
import pymongo.errors
import redis.exceptions
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.answering.llm import LLMError, LLMTimeout
from app.intake.multipart import MultipartError, TruncatedBody
from app.intake.receiver import QueueUnavailable, Refusal, UploadRejected
from app.intake.removal import NotRemovable
from app.retrieval.params import KTooLarge
from app.stores.idempotency import KeyInUse
from app.stores.keys import KeyLimitReached

log = logging.getLogger("app")


class ApiError(StrEnum):
    """The code of every HTTP error the API answers (a file's own status codes are app/status.py ErrorCode)."""

    # any request
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    ERROR = "error"  # a framework error of any other status (none is expected)
    # who may call
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    REMOTE_ACCESS_REFUSED = "remote_access_refused"
    # uploads
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    CONTENT_TYPE_MISMATCH = "content_type_mismatch"
    EMPTY_FILE = "empty_file"
    TOO_MANY_FILES = "too_many_files"
    DUPLICATE = "duplicate"
    INVALID_METADATA = "invalid_metadata"
    MALFORMED_MULTIPART = "malformed_multipart"
    TRUNCATED_MULTIPART = "truncated_multipart"
    UPLOAD_EXPIRED = "upload_expired"
    TENANT_QUEUE_FULL = "tenant_queue_full"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_CONTENT = "invalid_content"  # MCP upload_document: content_base64 is not base64
    # files
    FILE_NOT_FOUND = "file_not_found"
    INVALID_FILE_ID = "invalid_file_id"
    UPLOAD_IN_PROGRESS = "upload_in_progress"
    # search and answers
    INVALID_QUERY = "invalid_query"
    INVALID_K = "invalid_k"
    K_TOO_LARGE = "k_too_large"
    INVALID_MODE = "invalid_mode"
    INVALID_FILTERS = "invalid_filters"
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_ERROR = "llm_error"
    LLM_TIMEOUT = "llm_timeout"
    # admin
    KEY_NOT_FOUND = "key_not_found"
    KEY_LIMIT_REACHED = "key_limit_reached"
    INVALID_KEY_ID = "invalid_key_id"


def error_body(code: ApiError, message: str) -> dict[str, dict[str, str]]:
    return {"detail": {"code": str(code), "message": message}}


def error_response(status: int, code: ApiError, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def http_error(status: int, code: ApiError, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    """What a route or dependency raises to refuse a request."""
    return HTTPException(status_code=status, detail=error_body(code, message)["detail"], headers=headers)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error of this API."""

    detail: ErrorDetail


DESCRIPTIONS: dict[int, str] = {
    400: "malformed_multipart, truncated_multipart",
    401: "unauthorized: no API key, or a malformed, unknown or revoked one",
    403: "forbidden: the API key lacks the scope this operation needs",
    404: "not found (for the caller's tenant)",
    408: "upload_expired: the upload stalled longer than SAVING_TIMEOUT_S; nothing was kept",
    409: "conflict",
    413: "file_too_large, request_too_large",
    415: "unsupported_type, content_type_mismatch",
    422: "the request is not valid: the code says what (invalid_request, invalid_query, ...)",
    429: "rate_limited (per API key) or tenant_queue_full; retry after `Retry-After` seconds",
    502: "llm_error",
    503: "dependency_unavailable (retry after `Retry-After`)",
    504: "llm_timeout",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}


def responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error body; `s404="..."` overrides a text."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": descriptions.get(f"s{status}", DESCRIPTIONS[status]),
        }
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


AUTHED = (401, 403, 413, 503)  # what any operation behind an API key may answer

# --- validation errors: which code -------------------------------------------------------------

# the first field an error is about -> its code (anything else: invalid_request)
FIELD_CODES = {
    "query": ApiError.INVALID_QUERY,
    "q": ApiError.INVALID_QUERY,
    "k": ApiError.INVALID_K,
    "mode": ApiError.INVALID_MODE,
    "filters": ApiError.INVALID_FILTERS,
    "file_id": ApiError.INVALID_FILTERS,
    "content_type": ApiError.INVALID_FILTERS,
    "filename": ApiError.INVALID_FILTERS,
    "uploaded_after": ApiError.INVALID_FILTERS,
    "uploaded_before": ApiError.INVALID_FILTERS,
}
# a path parameter's own code
PATH_CODES = {"file_id": ApiError.INVALID_FILE_ID, "key_id": ApiError.INVALID_KEY_ID}


def describe_errors(errors: Sequence[Any]) -> tuple[ApiError, str]:
    """(code, message) for pydantic / FastAPI validation errors."""
    parts: list[str] = []
    codes: list[ApiError] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else ""
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where the field was sent, not the field
        if where == "path" and loc and loc[0] in PATH_CODES:
            parts.append(f"{loc[0]}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
            codes.append(PATH_CODES[loc[0]])
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON: {err.get('ctx', {}).get('error', msg)}")
            codes.append(ApiError.INVALID_REQUEST)
            continue
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        codes.append(FIELD_CODES.get(loc[0], ApiError.INVALID_REQUEST) if loc else ApiError.INVALID_REQUEST)
    return (codes[0] if codes else ApiError.INVALID_REQUEST), "; ".join(parts) or "The request is not valid."


# --- what services and stores raise, as HTTP ------------------------------------------------------

QUEUE_FULL_RETRY_S = "30"
UPLOAD_REFUSALS: dict[Refusal, tuple[int, ApiError]] = {
    Refusal.FILE_TOO_LARGE: (413, ApiError.FILE_TOO_LARGE),
    Refusal.UNSUPPORTED_TYPE: (415, ApiError.UNSUPPORTED_TYPE),
    Refusal.CONTENT_TYPE_MISMATCH: (415, ApiError.CONTENT_TYPE_MISMATCH),
    Refusal.EMPTY_FILE: (422, ApiError.EMPTY_FILE),
    Refusal.TOO_MANY_FILES: (422, ApiError.TOO_MANY_FILES),
    Refusal.INVALID_METADATA: (422, ApiError.INVALID_METADATA),
    Refusal.DUPLICATE: (409, ApiError.DUPLICATE),
    Refusal.UPLOAD_EXPIRED: (408, ApiError.UPLOAD_EXPIRED),
    Refusal.TENANT_QUEUE_FULL: (429, ApiError.TENANT_QUEUE_FULL),
}


def llm_error(exc: LLMError) -> tuple[int, ApiError]:
    """An LLM failure's status and code: 504 `llm_timeout` for a timeout, else 502 `llm_error`."""
    return (504, ApiError.LLM_TIMEOUT) if isinstance(exc, LLMTimeout) else (502, ApiError.LLM_ERROR)


def _object_storage_errors() -> dict[type[Exception], str]:
    """S3 away (connection errors, timeouts) or refusing (any error answer: 5xx, SlowDown, a missing bucket,
    bad credentials: the operator's, never the caller's). {} without boto3 (the S3 extra)."""
    try:
        from boto3.exceptions import S3UploadFailedError  # upload_file's wrapper of a ClientError
        from botocore import exceptions as bc
    except ImportError:
        return {}
    errors = (
        bc.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ...
        bc.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError
        bc.NoCredentialsError,
        bc.PartialCredentialsError,
        bc.CredentialRetrievalError,
        bc.ClientError,
        S3UploadFailedError,
    )
    return dict.fromkeys(errors, "Object storage")


# a server the API needs is away: answer 503 at once rather than hang or 500
DEPENDENCY_ERRORS: dict[type[Exception], str] = {
    pymongo.errors.ConnectionFailure: "MongoDB",
    psycopg.OperationalError: "PostgreSQL",
    psycopg_pool.PoolTimeout: "PostgreSQL",
    redis.exceptions.ConnectionError: "Valkey",
    redis.exceptions.TimeoutError: "Valkey",
    **_object_storage_errors(),
}

# Starlette's and FastAPI's own errors (an unknown route, a wrong method, a body that is not UTF-8)
# carry a string `detail`: give them a code like every other error of this API
FRAMEWORK_CODES = {400: ApiError.INVALID_REQUEST, 404: ApiError.NOT_FOUND, 405: ApiError.METHOD_NOT_ALLOWED}


@dataclass(frozen=True)
class Refused:
    """How the API answers an exception: status, code, message, headers."""

    status: int
    code: ApiError
    message: str
    headers: dict[str, str] | None = None


def dependency_name(exc: BaseException) -> str | None:
    """The server a driver's error says is away (MongoDB, PostgreSQL, Valkey, Object storage), else None."""
    return next((server for kind, server in DEPENDENCY_ERRORS.items() if isinstance(exc, kind)), None)


def describe(exc: BaseException) -> Refused | None:
    """The answer to an exception a service or store raises; None: not one the caller can cause or meet.
    The HTTP handlers below and the MCP tools (app/mcp/server.py) both answer through this."""
    if isinstance(exc, UploadRejected):
        status, code = UPLOAD_REFUSALS[exc.refusal]
        retry = {"Retry-After": QUEUE_FULL_RETRY_S} if code is ApiError.TENANT_QUEUE_FULL else None
        return Refused(status, code, exc.message, retry)
    if isinstance(exc, TruncatedBody):
        return Refused(400, ApiError.TRUNCATED_MULTIPART, str(exc))
    if isinstance(exc, MultipartError):
        return Refused(400, ApiError.MALFORMED_MULTIPART, str(exc))
    if isinstance(exc, QueueUnavailable):
        return Refused(503, ApiError.QUEUE_UNAVAILABLE, str(exc), {"Retry-After": "5"})
    if isinstance(exc, NotRemovable):
        status = 404 if exc.code == NotRemovable.FILE_NOT_FOUND else 409
        return Refused(status, ApiError(exc.code), exc.message)
    if isinstance(exc, KeyInUse):
        return Refused(409, ApiError.IDEMPOTENCY_KEY_IN_USE, "A request with this Idempotency-Key is running.")
    if isinstance(exc, KeyLimitReached):
        return Refused(409, ApiError.KEY_LIMIT_REACHED, str(exc))
    if isinstance(exc, KTooLarge):
        return Refused(422, ApiError.K_TOO_LARGE, str(exc))
    if isinstance(exc, LLMError):
        status, code = llm_error(exc)
        return Refused(status, code, exc.message)
    server = dependency_name(exc)
    if server is not None:
        message = f"{server} is unavailable; retry later."
        return Refused(503, ApiError.DEPENDENCY_UNAVAILABLE, message, {"Retry-After": "5"})
    return None


DESCRIBED: tuple[type[Exception], ...] = (
    UploadRejected,
    MultipartError,  # and TruncatedBody, its subclass
    QueueUnavailable,
    NotRemovable,
    KeyInUse,
    KeyLimitReached,
    KTooLarge,
    LLMError,  # and LLMTimeout
    *DEPENDENCY_ERRORS,
)

Handler = Callable[[Request, Exception], Awaitable[Response]]


async def _described(request: Request, exc: Exception) -> Response:
    refused = describe(exc)
    if refused is None:  # not one of DESCRIBED: ours
        raise exc
    if refused.code is ApiError.DEPENDENCY_UNAVAILABLE:
        server = dependency_name(exc)
        log.warning("%s unavailable during %s %s: %s", server, request.method, request.url.path, type(exc).__name__)
    return error_response(refused.status, refused.code, refused.message, headers=refused.headers)


async def _validation(request: Request, exc: Exception) -> Response:
    """Every 422 as `{"detail": {"code", "message"}}`, like every other error here."""
    code, message = describe_errors(exc.errors() if isinstance(exc, RequestValidationError) else [])
    return error_response(422, code, message)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if isinstance(exc.detail, dict) or exc.status_code in (204, 304):  # ours (http_error), or no body
        return await http_exception_handler(request, exc)
    if exc.status_code == 400 and request.url.path != "/upload":  # a JSON body that could not be read
        message = (
            "The body's arrays and objects are nested too deeply."  # json.loads ran out of recursion
            if isinstance(exc.__cause__, RecursionError)
            else "The body is not valid JSON in UTF-8."
        )
        return error_response(422, ApiError.INVALID_REQUEST, message, headers=headers)
    code = FRAMEWORK_CODES.get(exc.status_code, ApiError.ERROR)
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def install(app: FastAPI) -> None:
    """Answer every exception a request may raise with its status and coded body."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for exc_type in DESCRIBED:
        app.add_exception_handler(exc_type, _described)
