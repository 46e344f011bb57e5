"""`Idempotency-Key`: a retried request gets the first response, for IDEMPOTENCY_TTL_S.

A key is claimed by inserting its document (`_id` is unique, so one request wins);
the winner stores its response; a retry finds it and replays it. A request that
failed without a response releases its key so the client can try again.
"""

from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from app.status import now


class KeyInUse(Exception):
    """Another request with the same key is still running."""


class IdempotencyStore:
    def __init__(self, client: AsyncMongoClient, db_name: str, ttl_s: int) -> None:
        self.col = client[db_name]["idempotency"]
        self.ttl_s = ttl_s

    async def ensure_indexes(self) -> None:
        await self.col.create_index("expires_at", expireAfterSeconds=0)

    @staticmethod
    def _id(tenant: str, key: str) -> str:
        return f"{tenant}:{key}"

    async def begin(self, tenant: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """Claim the key; returns the stored response of an earlier request, if any."""
        stamp = now()
        doc = {"_id": self._id(tenant, key), "fingerprint": fingerprint, "state": "running",
               "created_at": stamp, "expires_at": stamp + timedelta(seconds=self.ttl_s)}  # fmt: skip
        try:
            await self.col.insert_one(doc)
            return None
        except DuplicateKeyError:
            existing = await self.col.find_one({"_id": doc["_id"]})
        if existing is None:  # expired between the two calls
            return await self.begin(tenant, key, fingerprint)
        if existing["state"] != "done":
            raise KeyInUse(key)
        return existing

    async def complete(self, tenant: str, key: str, status_code: int, body: dict[str, Any]) -> None:
        await self.col.update_one(
            {"_id": self._id(tenant, key)}, {"$set": {"state": "done", "status_code": status_code, "body": body}}
        )

    async def release(self, tenant: str, key: str) -> None:
        await self.col.delete_one({"_id": self._id(tenant, key), "state": "running"})
