"""API keys in MongoDB (`api_keys`): async for the API, sync for the admin CLI (`python -m app.keys`).

A document: `_id` (the key id, the `<id>` of `dp_<id>_<secret>`), `tenant`, `name`, `scopes`,
`hash` (SHA-256 of `id:secret`; the secret itself is never stored), `created_at`,
`last_used_at` (written at most every KEY_TOUCH_INTERVAL_S) and `revoked_at`. Every query
that lists or revokes keys is filtered by tenant; only the lookup of a presented key is by
`_id` alone (the key decides the tenant).

A tenant has at most `cap` (MAX_KEYS_PER_TENANT) active, not revoked, keys; every creation
and revocation is written to the audit log (app/stores/audit.py) by the store itself.
"""

import contextlib
import hashlib
import secrets
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from app.status import now
from app.stores.audit import Actor, AuditStore, SyncAuditStore

PREFIX = "dp"


class KeyLimitReached(Exception):
    """The tenant already has `cap` active keys."""

    def __init__(self, tenant: str, cap: int) -> None:
        super().__init__(
            f"Tenant {tenant!r} is at its limit of {cap} active API keys (MAX_KEYS_PER_TENANT): revoke one first."
        )


def new_key() -> tuple[str, str, str]:
    """(key id, the full key `dp_<id>_<secret>` to hand out once, the hash to store)."""
    key_id = secrets.token_hex(6)  # 12 hex digits
    secret = secrets.token_urlsafe(32)  # 43 characters, 256 random bits
    return key_id, f"{PREFIX}_{key_id}_{secret}", hash_secret(key_id, secret)


def hash_secret(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


INDEXES = [[("tenant", ASCENDING), ("created_at", DESCENDING)]]
PUBLIC_FIELDS = {"hash": 0}  # never leaves the store

# The cap: count, insert, count again, and take our key back out when the second count is over
# the cap. Whichever of several concurrent creates inserted last sees every other one in its
# count, so they can never all stay over the cap; near it, concurrent creates may all be refused
# (a retry succeeds). Chosen over a per-tenant counter document ($inc guarded by $lt): nothing
# to seed for existing tenants, to decrement on revoke, or to drift when a process dies between
# two writes; the counts are over the tenant's keys, at most the cap plus those revoked.


def _active(tenant: str) -> dict[str, Any]:
    return {"tenant": tenant, "revoked_at": None}


def _new_doc(tenant: str, name: str, scopes: list[str]) -> tuple[dict[str, Any], str]:
    key_id, key, digest = new_key()
    doc = {"_id": key_id, "tenant": tenant, "name": name, "scopes": list(scopes), "hash": digest,
           "created_at": now(), "last_used_at": None, "revoked_at": None}  # fmt: skip
    return doc, key


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "hash"}


class KeyStore:
    """The API's view (async)."""

    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.col = client[db_name]["api_keys"]
        self.audit = AuditStore(client, db_name)

    async def ensure_indexes(self) -> None:
        for keys in INDEXES:
            await self.col.create_index(keys)
        await self.audit.ensure_indexes()

    async def get(self, key_id: str) -> dict[str, Any] | None:
        """The key's document (with its hash), to check a presented key."""
        return await self.col.find_one({"_id": key_id})

    async def touch(self, key_id: str, stamp: datetime) -> None:
        await self.col.update_one({"_id": key_id}, {"$set": {"last_used_at": stamp}})

    async def create(
        self, tenant: str, name: str, scopes: list[str], *, cap: int, actor: Actor
    ) -> tuple[dict[str, Any], str]:
        """A new key: (its public document, the key to show once). KeyLimitReached at the cap."""
        if await self.col.count_documents(_active(tenant)) >= cap:
            raise KeyLimitReached(tenant, cap)
        doc, key = _new_doc(tenant, name, scopes)
        await self.col.insert_one(doc)
        try:
            if await self.col.count_documents(_active(tenant)) > cap:  # a concurrent create: see above
                raise KeyLimitReached(tenant, cap)
            await self.audit.record(tenant, "key.created", doc["_id"], actor)
        except Exception:
            with contextlib.suppress(PyMongoError):  # never handed out: no key without its audit entry
                await self.col.delete_one({"_id": doc["_id"]})
            raise
        return _public(doc), key

    async def list(self, tenant: str) -> list[dict[str, Any]]:
        cursor = self.col.find({"tenant": tenant}, PUBLIC_FIELDS).sort("created_at", DESCENDING)
        return await cursor.to_list(length=10_000)

    async def revoke(self, tenant: str, key_id: str, *, actor: Actor) -> dict[str, Any] | None:
        """Revoke the tenant's key (idempotent: audited once); None when the tenant has no such key."""
        doc = await self.col.find_one({"_id": key_id, "tenant": tenant}, PUBLIC_FIELDS)
        if doc is None or doc.get("revoked_at") is not None:
            return doc
        stamp = now()
        done = await self.col.update_one({"_id": key_id, "tenant": tenant, "revoked_at": None},
                                         {"$set": {"revoked_at": stamp}})  # fmt: skip
        if done.modified_count:  # not revoked by a concurrent call in between
            await self.audit.record(tenant, "key.revoked", key_id, actor)
        doc["revoked_at"] = stamp
        return doc


class SyncKeyStore:
    """The admin CLI's view (sync): any tenant."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.col = client[db_name]["api_keys"]
        self.audit = SyncAuditStore(client, db_name)

    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self.col.create_index(keys)
        self.audit.ensure_indexes()

    def create(
        self, tenant: str, name: str, scopes: list[str], *, cap: int, actor: Actor
    ) -> tuple[dict[str, Any], str]:
        """As `KeyStore.create`."""
        if self.col.count_documents(_active(tenant)) >= cap:
            raise KeyLimitReached(tenant, cap)
        doc, key = _new_doc(tenant, name, scopes)
        self.col.insert_one(doc)
        try:
            if self.col.count_documents(_active(tenant)) > cap:
                raise KeyLimitReached(tenant, cap)
            self.audit.record(tenant, "key.created", doc["_id"], actor)
        except Exception:
            with contextlib.suppress(PyMongoError):
                self.col.delete_one({"_id": doc["_id"]})
            raise
        return _public(doc), key

    def list(self, tenant: str | None = None) -> list[dict[str, Any]]:
        flt = {"tenant": tenant} if tenant else {}
        return list(self.col.find(flt, PUBLIC_FIELDS).sort([("tenant", ASCENDING), ("created_at", DESCENDING)]))

    def revoke(self, key_id: str, *, actor: Actor) -> dict[str, Any] | None:
        """Revoke a key of any tenant (idempotent: audited once); None when there is no such key."""
        doc = self.col.find_one({"_id": key_id}, PUBLIC_FIELDS)
        if doc is None or doc.get("revoked_at") is not None:
            return doc
        stamp = now()
        done = self.col.update_one({"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": stamp}})
        if done.modified_count:
            self.audit.record(doc["tenant"], "key.revoked", key_id, actor)
        doc["revoked_at"] = stamp
        return doc
