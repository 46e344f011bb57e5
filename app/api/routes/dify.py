"""Dify's External Knowledge API: `POST /retrieval` (the mapping is app/retrieval/dify.py).

Its errors are Dify's shape, `{"error_code": int, "error_msg": str}`:

    1001  403  the Authorization header is missing or not `Bearer <api-key>`
    1002  403  the key is unknown, revoked or wrong, or lacks the `read` scope
    2001  404  no document of the tenant has this `knowledge_base` (knowledge_id)
    3001  422  the request body is not what the API documents
    3002  422  a metadata condition the search cannot express (an operator other than is, =, in; or across fields)
    4001  429  QUERY_RATE exceeded for the key (with Retry-After)

A server away is 503 `dependency_unavailable` and a body over MAX_JSON_BYTES 413, as everywhere.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.api.auth import Principal, presented_key, principal_for
from app.api.deps import SettingsDep, StoresDep
from app.api.errors import ErrorResponse
from app.retrieval.dify import (
    KnowledgeNotFound,
    RetrievalRequest,
    RetrievalResponse,
    UnsupportedCondition,
    knowledge_records,
)


class DifyErrorBody(BaseModel):
    """An error of the External Knowledge API, as Dify documents it."""

    error_code: int
    error_msg: str


class DifyError(Exception):
    def __init__(self, status: int, error_code: int, error_msg: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.error_code, self.error_msg, self.headers = status, error_code, error_msg, headers
        super().__init__(error_msg)


def _invalid(errors: list[Any]) -> DifyError:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return DifyError(422, 3001, "; ".join(parts) or "The request is not valid.")


class DifyRoute(APIRoute):
    """Every failure of this route as Dify's `{error_code, error_msg}`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def dify_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                error = _invalid(list(exc.errors()))
            except DifyError as exc:
                error = exc
            except HTTPException as exc:
                if exc.status_code != 400:  # 400: a body FastAPI could not read as JSON
                    raise
                error = DifyError(422, 3001, "The body is not valid JSON in UTF-8.")
            body = {"error_code": error.error_code, "error_msg": error.error_msg}
            return JSONResponse(body, status_code=error.status, headers=error.headers)

        return dify_errors


router = APIRouter(tags=["dify"], route_class=DifyRoute)


async def dify_reader(request: Request) -> Principal:
    """The caller, as Dify's errors 1001 / 1002 (403); within QUERY_RATE (4001, 429)."""
    settings = request.app.state.settings
    presented = presented_key(request.headers)
    if settings.auth == "enabled" and presented is None:
        raise DifyError(403, 1001, "Invalid Authorization header format. Expected 'Bearer <api-key>' format.")
    principal = await principal_for(settings, request.app.state.stores.keys, presented)
    if principal is None:
        raise DifyError(403, 1002, "Authorization failed: the API key is unknown, revoked or wrong.")
    if not principal.has("read"):
        raise DifyError(403, 1002, "Authorization failed: this API key lacks the 'read' scope.")
    try:
        await request.app.state.limiter.check("query", principal.key_id)
    except HTTPException as exc:
        raise DifyError(429, 4001, str(exc.detail.get("message", "")), dict(exc.headers or {})) from exc  # type: ignore[union-attr]
    return principal


def _error(description: str) -> dict[str, Any]:
    return {"model": DifyErrorBody, "description": description}


@router.post(
    "/retrieval",
    response_model=RetrievalResponse,
    responses={
        403: _error("1001: no `Authorization: Bearer <api-key>`; 1002: unknown key, or no `read` scope"),
        404: _error("2001: no document has this knowledge_base"),
        413: {"model": ErrorResponse, "description": "request_too_large"},
        422: _error("3001: the body is not valid; 3002: a metadata condition that is not supported"),
        429: {
            **_error("4001: QUERY_RATE exceeded"),
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
        },
        503: {
            "model": ErrorResponse,
            "description": "dependency_unavailable",
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
        },
    },
)
async def retrieval(
    body: RetrievalRequest,
    principal: Annotated[Principal, Depends(dify_reader)],
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
) -> RetrievalResponse:
    """Dify's External Knowledge API: the `top_k` chunks of the knowledge base `knowledge_id` (documents
    uploaded with metadata `knowledge_base` equal to it; `all`: every document of the tenant) most similar
    to `query`, at least `score_threshold` similar (cosine, 0..1), restricted by `metadata_condition`."""
    try:
        records = await knowledge_records(
            settings, stores.files, stores.chunks, request.app.state.query_embedder, principal.tenant, body
        )
    except KnowledgeNotFound as exc:
        raise DifyError(404, 2001, f"The knowledge base {body.knowledge_id!r} does not exist.") from exc
    except UnsupportedCondition as exc:
        raise DifyError(422, 3002, f"metadata_condition: {exc}") from exc
    return RetrievalResponse(records=records)
