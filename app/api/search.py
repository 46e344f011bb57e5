import anyio
from fastapi import APIRouter, Request

from app.api.deps import SettingsDep, StoresDep, TenantDep
from app.api.errors import http_error
from app.models import QueryRequest, QueryResponse, SearchHit

router = APIRouter(tags=["search"])


@router.post("/query", response_model=QueryResponse)
async def query(
    body: QueryRequest, request: Request, tenant: TenantDep, stores: StoresDep, settings: SettingsDep
) -> QueryResponse:
    """The `k` chunks closest in meaning to `query` (cosine over the HNSW index)."""
    if body.k > settings.query_max_k:
        raise http_error(422, "k_too_large", f"k may be at most {settings.query_max_k}.")
    embedder = request.app.state.query_embedder
    vector = (await anyio.to_thread.run_sync(embedder.embed, [body.query]))[0]
    rows = await stores.chunks.vector_search(tenant, vector, body.k)
    return QueryResponse(
        query=body.query,
        results=[
            SearchHit(
                text=r["text"],
                score=float(r["score"]),
                file_id=r["file_id"],
                filename=r["filename"],
                chunk_index=r["ordinal"],
                page_start=r["page_start"],
                page_end=r["page_end"],
                heading_path=list(r["heading_path"] or []),
            )
            for r in rows
        ],
    )
