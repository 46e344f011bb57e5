"""Search: POST /query (JSON, every option) and GET /search (query parameters, for quick use)."""

import time
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from pydantic import StringConstraints, ValidationError

from app.api.deps import QueryEmbedder, QueryTenant, SettingsDep, StoresDep
from app.api.errors import AUTHED, ApiError, describe_errors, http_error, responses
from app.api.interaction_log import log_after
from app.api.schemas import SearchHit, SearchRequest, SearchResponse
from app.embedding.embedder import Embedder
from app.retrieval.filters import Filters, from_query_params
from app.retrieval.interaction import Interaction
from app.retrieval.params import Mode, SearchParams, search_params
from app.retrieval.search import retrieve, since_ms
from app.stores import Stores
from app.stores.storable import storable

router = APIRouter(tags=["search"])

ERRORS: dict[int | str, dict[str, Any]] = responses(
    *AUTHED, 422, 429, s422="invalid_query, invalid_k, k_too_large, invalid_mode, invalid_filters, invalid_request"
)


async def _search(
    background: BackgroundTasks, tenant: str, stores: Stores, embedder: Embedder, endpoint: str, params: SearchParams
) -> SearchResponse:
    t0 = time.perf_counter()
    retrieval = await retrieve(stores.chunks, embedder, tenant, params)
    latency = {**retrieval.latency_ms, "total_ms": since_ms(t0)}
    record = Interaction(tenant, endpoint, params.query, params, retrieval.hits, latency)
    return SearchResponse(
        query=params.query,
        mode=params.mode,
        results=[SearchHit.from_hit(h) for h in retrieval.hits],
        latency_ms=latency,
        interaction_id=log_after(background, stores, record),
    )


@router.post("/query", response_model=SearchResponse, responses=ERRORS)
async def query(
    body: SearchRequest,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
    embedder: QueryEmbedder,
) -> SearchResponse:
    """The `k` chunks that best match `query`: by meaning (`vector`: pgvector HNSW, cosine), by
    words (`keyword`: PostgreSQL full text), or both fused by reciprocal rank (`hybrid`, the
    default); restricted by `filters`."""
    params = search_params(
        settings, body.query, body.mode, body.k, body.filters, body.highlight, body.vector_weight, body.keyword_weight
    )
    return await _search(background, tenant, stores, embedder, "query", params)


@router.get("/search", response_model=SearchResponse, responses=ERRORS)
async def search_get(
    request: Request,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
    embedder: QueryEmbedder,
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
        message = "q: the query is empty, or has NUL characters or invalid Unicode."
        raise http_error(422, ApiError.INVALID_QUERY, message)
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
        raise http_error(422, ApiError.INVALID_FILTERS, message) from exc
    params = search_params(settings, q.strip(), mode, k, None if filters.is_empty() else filters, highlight)
    return await _search(background, tenant, stores, embedder, "search", params)
