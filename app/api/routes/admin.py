"""API keys of the caller's tenant: create, list, revoke, and the audit log (the `admin` scope).

An admin key manages its own tenant's keys only: another tenant's key id is 404. The
first admin key of a tenant comes from the CLI (`python -m app.cli.keys create ...`). A tenant
has at most MAX_KEYS_PER_TENANT active keys (409 `key_limit_reached`); every creation and
revocation is in the tenant's audit log (`GET /admin/audit`).
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from app.api.auth import Principal
from app.api.deps import AdminPrincipal, SettingsDep, StoresDep
from app.api.errors import AUTHED, ApiError, http_error, responses
from app.api.schemas import AuditEntry, AuditList, KeyCreate, KeyCreated, KeyList, KeyOut
from app.stores.audit import Actor

router = APIRouter(prefix="/admin", tags=["admin"])

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="the <id> of dp_<id>_<secret>")]


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor(principal.key_id, getattr(request.state, "request_id", None))


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    responses=responses(*AUTHED, 409, 422, s409="key_limit_reached: the tenant has MAX_KEYS_PER_TENANT active keys"),
)
async def create_key(
    body: KeyCreate, principal: AdminPrincipal, stores: StoresDep, settings: SettingsDep, request: Request
) -> KeyCreated:
    """A new API key for the caller's tenant. The key is in this response only: store it now.
    409 `key_limit_reached` when the tenant has MAX_KEYS_PER_TENANT active keys: revoke one first."""
    scopes = sorted(set(body.scopes), key=("read", "write", "admin").index)
    doc, key = await stores.keys.create(  # KeyLimitReached: 409 key_limit_reached
        principal.tenant, body.name, scopes, cap=settings.max_keys_per_tenant, actor=_actor(principal, request)
    )
    return KeyCreated(key=key, **KeyOut.from_doc(doc).model_dump())


@router.get("/keys", response_model=KeyList, responses=responses(*AUTHED))
async def list_keys(principal: AdminPrincipal, stores: StoresDep) -> KeyList:
    """The caller's tenant's keys, newest first (never their secrets)."""
    return KeyList(items=[KeyOut.from_doc(d) for d in await stores.keys.list(principal.tenant)])


@router.delete("/keys/{key_id}", status_code=204, responses=responses(*AUTHED, 404, 422))
async def revoke_key(key_id: KeyId, principal: AdminPrincipal, stores: StoresDep, request: Request) -> Response:
    """Revoke one of the caller's tenant's keys (at once, for every API process; idempotent)."""
    if await stores.keys.revoke(principal.tenant, key_id, actor=_actor(principal, request)) is None:
        raise http_error(404, ApiError.KEY_NOT_FOUND, f"No key {key_id}.")
    return Response(status_code=204)


@router.get("/audit", response_model=AuditList, responses=responses(*AUTHED, 422))
async def audit_log(
    principal: AdminPrincipal,
    stores: StoresDep,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> AuditList:
    """The caller's tenant's audit log, newest first: every key created and revoked, by whom."""
    docs, total = await stores.audit.list(principal.tenant, limit, offset)
    return AuditList(items=[AuditEntry.from_doc(d) for d in docs], total=total, limit=limit, offset=offset)
