"""The audit log in MongoDB (`audit`): which API key was created or revoked, by whom, when.

A document: `_id`, `tenant`, `action` (`key.created`, `key.revoked`), `key_id` (the key acted
on), `actor` (the acting API key's id, `cli` for `python -m app.keys`), `request_id` (over
HTTP; None from the CLI) and `time`. Each entry is also logged as one structured line
(logger `app.audit`). The key stores write it (app/stores/keys.py), so no way of creating or
revoking a key skips it; `GET /admin/audit` reads it, the caller's tenant only, newest first.
"""

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient

from app.status import now

audit_log = logging.getLogger("app.audit")

Action = Literal["key.created", "key.revoked"]
INDEXES = [[("tenant", ASCENDING), ("time", DESCENDING), ("_id", DESCENDING)]]
NEWEST_FIRST = [("time", DESCENDING), ("_id", DESCENDING)]


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key's id (with the HTTP request's id), or the CLI."""

    id: str
    request_id: str | None = None


CLI = Actor("cli")


def _entry(tenant: str, action: Action, key_id: str, actor: Actor) -> dict[str, Any]:
    return {"_id": uuid.uuid4().hex, "tenant": tenant, "action": action, "key_id": key_id, "actor": actor.id,
            "request_id": actor.request_id, "time": now()}  # fmt: skip


def _log(entry: dict[str, Any]) -> None:
    fields = {k: entry[k] for k in ("tenant", "action", "key_id", "actor", "request_id")}
    audit_log.info("%s %s by %s", entry["action"], entry["key_id"], entry["actor"], extra={"event": "audit", **fields})


class AuditStore:
    """The API's view (async)."""

    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.col = client[db_name]["audit"]

    async def ensure_indexes(self) -> None:
        for keys in INDEXES:
            await self.col.create_index(keys)

    async def record(self, tenant: str, action: Action, key_id: str, actor: Actor) -> None:
        entry = _entry(tenant, action, key_id, actor)
        await self.col.insert_one(entry)
        _log(entry)

    async def list(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The tenant's entries, newest first, and how many it has."""
        total = await self.col.count_documents({"tenant": tenant})
        cursor = self.col.find({"tenant": tenant}).sort(NEWEST_FIRST).skip(offset).limit(limit)
        return await cursor.to_list(length=limit), total


class SyncAuditStore:
    """The admin CLI's view (sync)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.col = client[db_name]["audit"]

    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self.col.create_index(keys)

    def record(self, tenant: str, action: Action, key_id: str, actor: Actor) -> None:
        entry = _entry(tenant, action, key_id, actor)
        self.col.insert_one(entry)
        _log(entry)
