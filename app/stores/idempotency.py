"""`Idempotency-Key`: a retried request gets the first response, for IDEMPOTENCY_TTL_S.

A key is claimed by inserting its document (`_id` is unique, so one request wins). While
its request runs, the document is `running` under the request's lease (app/lease.py),
renewed as the body arrives: if the API process dies, or the request is cancelled and its
release fails, the lease expires and a retry takes the key over and runs again. The winner
stores its response with the request's fingerprint (a digest of the tenant and every part's
name, filename and bytes, app/intake/receiver.py); a retry with the same fingerprint gets that response
replayed, a different request under the same key is refused. A request that failed without a
response releases its key so the client can try again at once.
"""

from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from app import lease
from app.status import now


class KeyInUse(Exception):
    """Another request with the same key is still running (its lease has not expired)."""


class IdempotencyStore:
    def __init__(self, client: AsyncMongoClient, db_name: str, ttl_s: int, lease_s: float) -> None:
        self.col = client[db_name]["idempotency"]
        self.ttl_s = ttl_s
        self.lease_s = lease_s

    async def ensure_indexes(self) -> None:
        await self.col.create_index("expires_at", expireAfterSeconds=0)

    @staticmethod
    def _id(tenant: str, key: str) -> str:
        return f"{tenant}:{key}"

    def _running(self, owner: str) -> dict[str, Any]:
        stamp = now()
        return {"state": "running", "lease": lease.new(owner, self.lease_s), "created_at": stamp,
                "expires_at": stamp + timedelta(seconds=self.ttl_s)}  # fmt: skip

    async def begin(self, tenant: str, key: str, owner: str) -> dict[str, Any] | None:
        """Hold the key for `owner`'s request (None); or the finished record of an earlier request.

        KeyInUse while another request holds it; a holder whose lease expired is taken over.
        """
        _id = self._id(tenant, key)
        for _ in range(3):  # the record may expire (TTL) between our insert and our look
            try:
                await self.col.insert_one({"_id": _id, **self._running(owner)})
                return None
            except DuplicateKeyError:
                existing = await self.col.find_one({"_id": _id})
            if existing is None:
                continue
            if existing["state"] == "done":
                return existing
            abandoned = {"$or": [lease.expired(), {"lease": None}]}
            taken = await self.col.update_one(
                {"_id": _id, "state": "running", **abandoned}, {"$set": self._running(owner)}
            )
            if taken.matched_count == 1:
                return None
            raise KeyInUse(key)
        raise KeyInUse(key)

    async def renew(self, tenant: str, key: str, owner: str) -> bool:
        """Extend the running request's lease; False when it was taken over."""
        result = await self.col.update_one(
            {"_id": self._id(tenant, key), "state": "running", **lease.held_by(owner)},
            {"$set": lease.renewal(self.lease_s)},
        )
        return result.matched_count == 1

    async def complete(
        self, tenant: str, key: str, owner: str, fingerprint: str, status_code: int, body: dict[str, Any]
    ) -> None:
        done = {"state": "done", "lease": None, "fingerprint": fingerprint, "status_code": status_code, "body": body}
        await self.col.update_one(
            {"_id": self._id(tenant, key), "state": "running", **lease.held_by(owner)}, {"$set": done}
        )

    async def release(self, tenant: str, key: str, owner: str) -> None:
        await self.col.delete_one({"_id": self._id(tenant, key), "state": "running", **lease.held_by(owner)})
