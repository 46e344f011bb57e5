"""API keys of the caller's tenant: create, list, revoke (the `admin` scope).

An admin key manages its own tenant's keys only: another tenant's key id is 404. The
first admin key of a tenant comes from the CLI (`python -m app.keys create ...`).
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.deps import AdminPrincipal, StoresDep
from app.api.errors import AUTHED, http_error, responses
from app.auth import Scope

router = APIRouter(prefix="/admin", tags=["admin"])

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


KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="the <id> of dp_<id>_<secret>")]


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=responses(*AUTHED, 422))
async def create_key(body: KeyCreate, principal: AdminPrincipal, stores: StoresDep) -> KeyCreated:
    """A new API key for the caller's tenant. The key is in this response only: store it now."""
    scopes = sorted(set(body.scopes), key=("read", "write", "admin").index)
    doc, key = await stores.keys.create(principal.tenant, body.name, scopes)
    return KeyCreated(key=key, **KeyOut.from_doc(doc).model_dump())


@router.get("/keys", response_model=KeyList, responses=responses(*AUTHED))
async def list_keys(principal: AdminPrincipal, stores: StoresDep) -> KeyList:
    """The caller's tenant's keys, newest first (never their secrets)."""
    return KeyList(items=[KeyOut.from_doc(d) for d in await stores.keys.list(principal.tenant)])


@router.delete("/keys/{key_id}", status_code=204, responses=responses(*AUTHED, 404, 422))
async def revoke_key(key_id: KeyId, principal: AdminPrincipal, stores: StoresDep) -> Response:
    """Revoke one of the caller's tenant's keys (at once, for every API process; idempotent)."""
    if await stores.keys.revoke(principal.tenant, key_id) is None:
        raise http_error(404, "key_not_found", f"No key {key_id}.")
    return Response(status_code=204)
