"""HTTP errors with a stable code: `{"detail": {"code": ..., "message": ...}}`.

`responses(...)` documents them in the OpenAPI schema (so clients, and the schema-based
fuzzing of tests/test_fuzz.py, know every status an operation may answer and its body).
"""

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

from app.status import MESSAGES, ErrorCode


def http_error(
    status: int, code: ErrorCode | str, message: str | None = None, headers: dict[str, str] | None = None
) -> HTTPException:
    text = message or (MESSAGES.get(code) if isinstance(code, ErrorCode) else None) or str(code)
    return HTTPException(status_code=status, detail={"code": str(code), "message": text}, headers=headers)


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
