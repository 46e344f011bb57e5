"""File status documents in MongoDB (`files`): async for the API, sync for workers
and the watchdog.

Every status change goes through `app.status.transition` as an `update_one`
compare-and-set filtered by `_id`. Not `find_one_and_update`: SecantusDB runs a
findAndModify in time proportional to the collection (50 ms at 5,000 files against
1.5 ms for the same update_one; BENCHMARKS.md), and no caller needs the document
back in the same round trip.
"""

import re
import time
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient

from app import lease
from app.fencing import Claim
from app.status import DELETABLE, ErrorCode, FileStatus, Stage, error_doc, now, transition

INDEXES = [
    ([("status", ASCENDING), ("lease.expires_at", ASCENDING)], {}),  # the watchdog's takeovers
    ([("tenant", ASCENDING), ("created_at", DESCENDING)], {}),
    ([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)], {}),
    ([("tenant", ASCENDING), ("sha256", ASCENDING)], {}),
    ([("status", ASCENDING), ("updated_at", ASCENDING)], {}),
]
# counted against MAX_PENDING_FILES_PER_TENANT
PENDING_STATES = [FileStatus.SAVING.value, FileStatus.QUEUED.value, FileStatus.PROCESSING.value]
PENDING_COUNT_TTL_S = 1.0
# a duplicate upload is answered with the existing file only while that file is alive
DEDUP_STATES = [FileStatus.QUEUED.value, FileStatus.PROCESSING.value, FileStatus.EMBEDDED.value]


class FileStore:
    """The API's view of `files` (async)."""

    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.client = client
        self.col = client[db_name]["files"]
        self._pending: dict[str, tuple[int, float]] = {}  # tenant -> (count, when counted); see count_pending

    async def ensure_indexes(self) -> None:
        for keys, opts in INDEXES:
            await self.col.create_index(keys, **opts)

    async def create(self, doc: dict[str, Any], owner: str, lease_s: float) -> None:
        """A new file, `saving` under the receiving request's lease (app/lease.py)."""
        stamp = now()
        await self.col.insert_one(
            {
                "status": FileStatus.SAVING.value,
                "created_at": stamp,
                "updated_at": stamp,
                "attempts": 0,
                "error": None,
                "stage": None,
                "lease": lease.new(owner, lease_s),
                **doc,
            }
        )
        self.pending_added(doc["tenant"], 1)

    async def renew_saving(self, tenant: str, file_ids: list[str], owner: str, lease_s: float) -> bool:
        """Extend the lease of the request's `saving` files; False when one was taken over (removed)."""
        result = await self.col.update_many(
            {"_id": {"$in": file_ids}, "tenant": tenant, "status": FileStatus.SAVING.value, **lease.held_by(owner)},
            {"$set": lease.renewal(lease_s)},
        )
        return result.matched_count == len(file_ids)

    async def mark_queued(self, tenant: str, file_id: str, owner: str, **fields: Any) -> bool:
        """saving -> queued, recording what the upload learnt (size, sha256, type, metadata).

        Only while the receiving request still holds the lease: False when the watchdog removed
        the upload meanwhile (the request must then answer with an error, never 202).
        """
        flt, upd = transition(FileStatus.SAVING, FileStatus.QUEUED, queued_at=now(), **fields)
        result = await self.col.update_one({"_id": file_id, "tenant": tenant, **flt, **lease.held_by(owner)}, upd)
        return result.matched_count == 1

    async def mark_deleting(self, tenant: str, file_id: str) -> bool:
        flt, upd = transition(DELETABLE, FileStatus.DELETING)
        result = await self.col.update_one({"_id": file_id, "tenant": tenant, **flt}, upd)
        return result.matched_count == 1

    async def get(self, tenant: str, file_id: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": file_id, "tenant": tenant})

    async def find_duplicate(self, tenant: str, sha256: str) -> dict[str, Any] | None:
        """The oldest live file of `tenant` with this content.

        The status is checked here, not in the query: SecantusDB plans `status: {$in: ...}`
        next to the tenant as a walk of all the tenant's pending files (88 ms at 5,000)
        instead of the (tenant, sha256) index (0.6 ms). Few files share a hash.
        """
        async for doc in self.col.find({"tenant": tenant, "sha256": sha256}).sort("created_at", ASCENDING):
            if doc["status"] in DEDUP_STATES:
                return doc
        return None

    async def list(
        self, tenant: str, status: FileStatus | None, limit: int, offset: int, name: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The tenant's files, newest first, with their total; `name` a filename glob (`*`, `?`; any case)."""
        flt: dict[str, Any] = {"tenant": tenant}
        if status:
            flt["status"] = status.value
        if name:
            flt["filename"] = {"$regex": glob_regex(name), "$options": "i"}
        total = await self.col.count_documents(flt)
        cursor = self.col.find(flt).sort("created_at", DESCENDING).skip(offset).limit(limit)
        return await cursor.to_list(length=limit), total

    async def delete(self, tenant: str, file_id: str) -> None:
        await self.col.delete_one({"_id": file_id, "tenant": tenant})

    async def any_with_metadata(self, tenant: str, key: str, value: Any) -> bool:
        """Whether any of the tenant's files has metadata `key` equal to `value` (or an array holding it)."""
        return await self.col.find_one({"tenant": tenant, f"metadata.{key}": value}, {"_id": 1}) is not None

    async def count_pending(self, tenant: str) -> int:
        """The tenant's files not yet done: saving, queued or processing (MAX_PENDING_FILES_PER_TENANT).

        Counting walks every pending file (20 ms per 1,000 on SecantusDB), so each file of an
        upload is checked against a count up to PENDING_COUNT_TTL_S old plus the files this
        process has created since (whatever request they belong to). Files finishing meanwhile
        only make the cap stricter for that long; a delete or a rollback drops the cached count.
        """
        cached = self._pending.get(tenant)
        if cached is not None and time.monotonic() - cached[1] < PENDING_COUNT_TTL_S:
            return cached[0]
        n = await self.col.count_documents({"tenant": tenant, "status": {"$in": PENDING_STATES}})
        self._pending[tenant] = (n, time.monotonic())
        return n

    def pending_added(self, tenant: str, added: int) -> None:
        """This process created `added` files for `tenant`: counted at once."""
        cached = self._pending.get(tenant)
        if cached is not None:
            self._pending[tenant] = (cached[0] + added, cached[1])

    def forget_pending(self, tenant: str) -> None:
        """Files of `tenant` were removed or a request rolled back: count again next time."""
        self._pending.pop(tenant, None)

    async def tenant_counts(self, tenant: str) -> tuple[dict[str, int], dict[str, int]]:
        """The tenant's files by status (every status, 0 included) and its failed files by error code."""
        by_status = {s.value: 0 for s in FileStatus}
        async for row in await self.col.aggregate(
            [{"$match": {"tenant": tenant}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ):
            by_status[str(row["_id"])] = row["n"]
        failed: dict[str, int] = {}
        async for row in await self.col.aggregate(
            [
                {"$match": {"tenant": tenant, "status": FileStatus.FAILED.value}},
                {"$group": {"_id": "$error.code", "n": {"$sum": 1}}},
            ]
        ):
            failed[str(row["_id"] or "unknown")] = row["n"]
        return by_status, failed


class SyncFileStore:
    """A worker's and the watchdog's view of `files` (sync).

    A worker's writes take its `Claim` and match only while the file is processing under that
    claim (app/fencing.py); the watchdog's take a file over only once its lease has expired.
    """

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.col = client[db_name]["files"]

    def get(self, file_id: str) -> dict[str, Any] | None:
        return self.col.find_one({"_id": file_id})

    def claim(self, file_id: str, owner: str, lease_s: float) -> tuple[Claim, dict[str, Any]] | None:
        """queued -> processing under a new lease, atomically: a second claim of the same file gets None.

        The claim's fencing token is the file's `attempts` after the claim's increment.
        """
        flt, upd = transition(
            FileStatus.QUEUED, FileStatus.PROCESSING, stage=Stage.DOWNLOAD.value, lease=lease.new(owner, lease_s)
        )
        if self.col.update_one({"_id": file_id, **flt}, upd).matched_count != 1:
            return None
        doc = self.get(file_id)
        if doc is None or doc.get("lease", {}).get("owner") != owner:
            return None  # deleted, or taken back, in between
        return Claim(file_id, int(doc["attempts"]), owner), doc

    def _write(self, claim: Claim, update: dict[str, Any]) -> bool:
        return self.col.update_one(claim.current(), update).matched_count == 1

    def _move(self, claim: Claim, new: FileStatus, **fields: Any) -> bool:
        _, upd = transition(FileStatus.PROCESSING, new, **fields)  # claim.current() matches the state
        return self._write(claim, upd)

    def set_stage(self, claim: Claim, stage: Stage, **progress: Any) -> bool:
        """Record progress; False when the file is no longer this claim's (deleted, taken back)."""
        fields = {f"progress.{k}": v for k, v in progress.items()}
        return self._write(claim, {"$set": {"stage": stage.value, "updated_at": now(), **fields}})

    def renew(self, claim: Claim, lease_s: float) -> bool:
        """The heartbeat: extend the claim's lease; False when the claim is no longer current."""
        return self._write(claim, {"$set": lease.renewal(lease_s)})

    def finish(self, claim: Claim, **fields: Any) -> bool:
        return self._move(claim, FileStatus.EMBEDDED, **fields)

    def fail(self, claim: Claim, code: ErrorCode, message: str | None = None, chunks_purged: bool = True) -> bool:
        """processing -> failed. `chunks_purged=False` when the file's chunks could not be removed
        yet: the watchdog removes them (`unpurged_failed`)."""
        return self._move(claim, FileStatus.FAILED, error=error_doc(code, message), chunks_purged=chunks_purged)

    def hand_back(self, claim: Claim, last_error: dict[str, str]) -> bool:
        """processing -> queued after a transient failure; the retry claims it again."""
        return self._move(claim, FileStatus.QUEUED, queued_at=now(), last_error=last_error)

    # --- the watchdog's queries ---------------------------------------------------

    def expired_processing(self, legacy_cutoff: datetime) -> list[dict[str, Any]]:
        """Processing files whose worker's lease expired (documents from before leases: a stale heartbeat)."""
        return list(
            self.col.find({"status": FileStatus.PROCESSING.value, **_expired_or_legacy("heartbeat_at", legacy_cutoff)})
        )

    def _take_back(self, doc: dict[str, Any], new: FileStatus, **fields: Any) -> bool:
        """A compare-and-set on the expired lease of the claim `doc` was read under."""
        flt, upd = transition(FileStatus.PROCESSING, new, **fields)
        match = {"_id": doc["_id"], **flt, "attempts": doc.get("attempts", 0)}
        if doc.get("lease"):
            match.update(lease.expired())
        else:
            match["heartbeat_at"] = doc.get("heartbeat_at")
        return self.col.update_one(match, upd).matched_count == 1

    def requeue_lost(self, doc: dict[str, Any], last_error: dict[str, str]) -> bool:
        """processing -> queued, only if the worker's lease is still expired."""
        return self._take_back(doc, FileStatus.QUEUED, queued_at=now(), last_error=last_error)

    def fail_lost(self, doc: dict[str, Any]) -> bool:
        """processing -> failed (worker_lost); its chunks are removed next (`mark_purged`)."""
        return self._take_back(doc, FileStatus.FAILED, error=error_doc(ErrorCode.WORKER_LOST), chunks_purged=False)

    def unpurged_failed(self) -> list[dict[str, Any]]:
        return list(self.col.find({"status": FileStatus.FAILED.value, "chunks_purged": False}))

    def mark_purged(self, file_id: str) -> None:
        self.col.update_one({"_id": file_id, "status": FileStatus.FAILED.value}, {"$set": {"chunks_purged": True}})

    def expired_saving(self, legacy_cutoff: datetime) -> list[dict[str, Any]]:
        """Uploads whose receiving request stopped renewing (documents from before leases: created long ago)."""
        return list(
            self.col.find({"status": FileStatus.SAVING.value, **_expired_or_legacy("created_at", legacy_cutoff)})
        )

    def remove_expired_saving(self, doc: dict[str, Any]) -> bool:
        """Delete an abandoned upload's document, only if its lease is still expired."""
        match: dict[str, Any] = {"_id": doc["_id"], "status": FileStatus.SAVING.value}
        match.update(lease.expired() if doc.get("lease") else {"lease": None})
        return self.col.delete_one(match).deleted_count == 1

    def in_state_since(self, status: FileStatus, field: str, cutoff: datetime) -> list[dict[str, Any]]:
        return list(self.col.find({"status": status.value, field: {"$lt": cutoff}}))

    def existing_ids(self, file_ids: list[str]) -> set[str]:
        return {d["_id"] for d in self.col.find({"_id": {"$in": file_ids}}, {"_id": 1})}

    def delete(self, file_id: str) -> None:
        self.col.delete_one({"_id": file_id})


def glob_regex(pattern: str) -> str:
    """A filename glob as an anchored regular expression: `*` any characters, `?` one, the rest literal."""
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + "$"


def _expired_or_legacy(legacy_field: str, legacy_cutoff: datetime) -> dict[str, Any]:
    return {"$or": [lease.expired(), {"lease": None, legacy_field: {"$lt": legacy_cutoff}}]}


def ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)
