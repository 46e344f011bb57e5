"""Search: POST /query (JSON, every option) and GET /search (query parameters, for quick use)."""

import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import StringConstraints, ValidationError

from app.api.deps import QueryTenant, SettingsDep, StoresDep
from app.api.errors import AUTHED, http_error, responses
from app.api.schemas import SearchHit, SearchRequest, SearchResponse
from app.retrieval.filters import Filters, from_query_params
from app.retrieval.params import Mode, SearchParams, search_params
from app.retrieval.search import Hit, Retrieval, retrieve, since_ms
from app.settings import Settings
from app.stores import Stores
from app.stores.interactions import new_id
from app.stores.storable import storable

# the first field an error is about -> its code (anything else: invalid_request)
FIELD_CODES = {
    "query": "invalid_query",
    "q": "invalid_query",
    "k": "invalid_k",
    "mode": "invalid_mode",
    "filters": "invalid_filters",
    "file_id": "invalid_filters",
    "content_type": "invalid_filters",
    "filename": "invalid_filters",
    "uploaded_after": "invalid_filters",
    "uploaded_before": "invalid_filters",
}


# a path parameter's own code
PATH_CODES = {"file_id": "invalid_file_id", "key_id": "invalid_key_id"}


def describe_errors(errors: Sequence[Any]) -> tuple[str, str]:
    """(code, message) for pydantic / FastAPI validation errors."""
    parts, codes = [], []
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
            codes.append("invalid_request")
            continue
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        codes.append(FIELD_CODES.get(loc[0], "invalid_request") if loc else "invalid_request")
    return (codes[0] if codes else "invalid_request"), "; ".join(parts) or "The request is not valid."


class CodedErrorsRoute(APIRoute):
    """Validation errors as `{"detail": {"code", "message"}}` (422), like every other error here."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def coded(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                code, message = describe_errors(exc.errors())
                raise http_error(422, code, message) from exc

        return coded


router = APIRouter(tags=["search"], route_class=CodedErrorsRoute)

ERRORS: dict[int | str, dict[str, Any]] = responses(
    *AUTHED, 422, 429, s422="invalid_query, invalid_k, k_too_large, invalid_mode, invalid_filters, invalid_request"
)


async def run_retrieval(request: Request, stores: Stores, tenant: str, params: SearchParams) -> Retrieval:
    return await retrieve(stores.chunks, request.app.state.query_embedder, tenant, params)


def interaction(
    tenant: str,
    endpoint: str,
    query: str,
    params: SearchParams | None,
    hits: Sequence[Hit],
    latency_ms: dict[str, float],
    **fields: Any,
) -> dict[str, Any]:
    """An `interactions` document (see app/stores/interactions.py)."""
    filters = params.filters if params else None
    return {
        "tenant": tenant,
        "endpoint": endpoint,
        "query": query,
        "mode": params.mode if params else None,
        "k": params.k if params else None,
        # as JSON text: filter keys are the caller's and need not be valid MongoDB field names
        "filters": filters.model_dump_json(exclude_none=True) if filters and not filters.is_empty() else None,
        "retrieved": [
            {
                "chunk_id": h.chunk_id,
                "file_id": h.file_id,
                "chunk_index": h.chunk_index,
                "score": h.score,
                "vector_score": h.vector_score,
                "keyword_score": h.keyword_score,
            }
            for h in hits
        ],
        "latency_ms": latency_ms,
        "answer": None,
        "generator": None,
        "model": None,
        "error": None,
        **fields,
    }


def assign_id(stores: Stores, doc: dict[str, Any]) -> str | None:
    """Give the interaction its id (None when the log is off)."""
    if stores.interactions is None:
        return None
    doc["_id"] = doc.get("_id") or new_id()
    return doc["_id"]


def log_after(background: BackgroundTasks, stores: Stores, doc: dict[str, Any]) -> str | None:
    """Write the interaction once the response has been sent; its id (None when the log is off)."""
    interaction_id = assign_id(stores, doc)
    if stores.interactions is not None:
        background.add_task(stores.interactions.record, doc)
    return interaction_id


async def _search(
    request: Request,
    background: BackgroundTasks,
    tenant: str,
    stores: Stores,
    settings: Settings,
    endpoint: str,
    params: SearchParams,
) -> SearchResponse:
    t0 = time.perf_counter()
    retrieval = await run_retrieval(request, stores, tenant, params)
    latency = {**retrieval.latency_ms, "total_ms": since_ms(t0)}
    doc = interaction(tenant, endpoint, params.query, params, retrieval.hits, latency)
    return SearchResponse(
        query=params.query,
        mode=params.mode,
        results=[SearchHit.from_hit(h) for h in retrieval.hits],
        latency_ms=latency,
        interaction_id=log_after(background, stores, doc),
    )


@router.post("/query", response_model=SearchResponse, responses=ERRORS)
async def query(
    body: SearchRequest,
    request: Request,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
) -> SearchResponse:
    """The `k` chunks that best match `query`: by meaning (`vector`: pgvector HNSW, cosine), by
    words (`keyword`: PostgreSQL full text), or both fused by reciprocal rank (`hybrid`, the
    default); restricted by `filters`."""
    params = search_params(
        settings, body.query, body.mode, body.k, body.filters, body.highlight, body.vector_weight, body.keyword_weight
    )
    return await _search(request, background, tenant, stores, settings, "query", params)


@router.get("/search", response_model=SearchResponse, responses=ERRORS)
async def search_get(
    request: Request,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=4000, description="the query")],
    k: Annotated[int, Query(ge=1)] = 5,
    mode: Mode = "hybrid",
    highlight: bool = False,
    file_id: Annotated[list[uuid.UUID] | None, Query(description="repeat for several files")] = None,
    content_type: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None,
        Query(description="repeat for several types"),
    ] = None,
    filename: Annotated[str | None, Query(max_length=500, description="glob: `report-*.pdf`")] = None,
    uploaded_after: datetime | None = None,
    uploaded_before: datetime | None = None,
) -> SearchResponse:
    """`POST /query` as query parameters. Metadata filters: `meta.KEY=VALUE` (repeat a key to
    match any of its values; `meta.year=2024` matches 2024 and "2024")."""
    if not q.strip() or not storable(q):
        raise http_error(422, "invalid_query", "q: the query is empty, or has NUL characters or invalid Unicode.")
    raw = {
        "file_ids": file_id,
        "content_types": content_type,
        "filename": filename,
        "uploaded_after": uploaded_after,
        "uploaded_before": uploaded_before,
        "metadata": from_query_params(request.query_params.multi_items()) or None,
    }
    try:
        filters = Filters.model_validate({k_: v for k_, v in raw.items() if v is not None})
    except ValidationError as exc:
        _, message = describe_errors(exc.errors())
        raise http_error(422, "invalid_filters", message) from exc
    params = search_params(settings, q.strip(), mode, k, None if filters.is_empty() else filters, highlight)
    return await _search(request, background, tenant, stores, settings, "search", params)
