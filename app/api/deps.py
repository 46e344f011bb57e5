"""What routers get injected: the stores built by the lifespan, and the caller's tenant.

The tenant comes from the caller's API key (app/api/auth.py), never from the request: every
store call takes it, and every query filters on it. Each operation names the scope it
needs (and the rate limit it counts against):

    ReadTenant     read                          GET /files, /files/{id}, /stats
    WriteTenant    write                         DELETE /files/{id}
    UploadTenant   write, UPLOAD_RATE            POST /upload
    QueryTenant    read, QUERY_RATE              /query, /search, /generate, /generate-text-with-context
    AdminPrincipal admin                         /admin/keys, /admin/audit
"""

from typing import Annotated, Any

from fastapi import Depends, Request

from app.answering.llm import ChatClient
from app.api.auth import Principal, Scope, require
from app.embedding.embedder import Embedder
from app.settings import Settings
from app.stores import Stores


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def tenant_of(scope: Scope, limit: Any = None) -> Any:
    """A dependency giving the tenant of a caller who has `scope` (and is within `limit`)."""
    needs = require(scope, limit)

    async def tenant(principal: Annotated[Principal, Depends(needs)]) -> str:
        return principal.tenant

    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ReadTenant = Annotated[str, Depends(tenant_of("read"))]
WriteTenant = Annotated[str, Depends(tenant_of("write"))]
UploadTenant = Annotated[str, Depends(tenant_of("write", "upload"))]
QueryTenant = Annotated[str, Depends(tenant_of("read", "query"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]


async def get_stores(request: Request) -> Stores:
    return request.app.state.stores


StoresDep = Annotated[Stores, Depends(get_stores)]


async def get_query_embedder(request: Request) -> Embedder:
    return request.app.state.query_embedder


async def get_llm(request: Request) -> ChatClient | None:
    """None when no LLM is configured (LLM_BASE_URL unset)."""
    return getattr(request.app.state, "llm", None)


QueryEmbedder = Annotated[Embedder, Depends(get_query_embedder)]
LLMDep = Annotated[ChatClient | None, Depends(get_llm)]
