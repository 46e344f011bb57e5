"""File status documents in MongoDB (`files`): async for the API, sync for workers
and the watchdog.

Every status change goes through `app.status.transition` as an `update_one`
compare-and-set filtered by `_id`. Not `find_one_and_update`: SecantusDB runs a
findAndModify in time proportional to the collection (50 ms at 5,000 files against
1.5 ms for the same update_one; BENCHMARKS.md), and no caller needs the document
back in the same round trip.
"""

import time
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient

from app.status import DELETABLE, ErrorCode, FileStatus, Stage, error_doc, now, transition

INDEXES = [
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

    async def create(self, doc: dict[str, Any]) -> None:
        stamp = now()
        await self.col.insert_one(
            {
                "status": FileStatus.SAVING.value,
                "created_at": stamp,
                "updated_at": stamp,
                "attempts": 0,
                "error": None,
                "stage": None,
                **doc,
            }
        )

    async def mark_queued(self, tenant: str, file_id: str, **fields: Any) -> bool:
        """saving -> queued, recording what the upload learnt (size, sha256, type, metadata)."""
        flt, upd = transition(FileStatus.SAVING, FileStatus.QUEUED, queued_at=now(), **fields)
        result = await self.col.update_one({"_id": file_id, "tenant": tenant, **flt}, upd)
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
        self, tenant: str, status: FileStatus | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        flt: dict[str, Any] = {"tenant": tenant}
        if status:
            flt["status"] = status.value
        total = await self.col.count_documents(flt)
        cursor = self.col.find(flt).sort("created_at", DESCENDING).skip(offset).limit(limit)
        return await cursor.to_list(length=limit), total

    async def delete(self, tenant: str, file_id: str) -> None:
        await self.col.delete_one({"_id": file_id, "tenant": tenant})

    async def count_pending(self, tenant: str) -> int:
        """The tenant's files not yet done: saving, queued or processing (MAX_PENDING_FILES_PER_TENANT).

        Counting walks every pending file (20 ms per 1,000 on SecantusDB), so an upload
        uses a count up to PENDING_COUNT_TTL_S old plus the files this process has
        queued since. Files finishing meanwhile only make the cap stricter for that
        long; a delete here drops the cached count.
        """
        cached = self._pending.get(tenant)
        if cached is not None and time.monotonic() - cached[1] < PENDING_COUNT_TTL_S:
            return cached[0]
        n = await self.col.count_documents({"tenant": tenant, "status": {"$in": PENDING_STATES}})
        self._pending[tenant] = (n, time.monotonic())
        return n

    def pending_added(self, tenant: str, added: int) -> None:
        """This process queued `added` files for `tenant`: counted at once."""
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
    """A worker's and the watchdog's view of `files` (sync)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.col = client[db_name]["files"]

    def get(self, file_id: str) -> dict[str, Any] | None:
        return self.col.find_one({"_id": file_id})

    def _move(
        self,
        file_id: str,
        current: FileStatus,
        new: FileStatus,
        extra_filter: dict[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        flt, upd = transition(current, new, **fields)
        return self.col.update_one({"_id": file_id, **flt, **(extra_filter or {})}, upd).matched_count == 1

    def claim(self, file_id: str) -> dict[str, Any] | None:
        """queued -> processing, atomically: a second claim of the same file gets None."""
        if not self._move(file_id, FileStatus.QUEUED, FileStatus.PROCESSING, stage=Stage.DOWNLOAD.value):
            return None
        return self.get(file_id)

    def set_stage(self, file_id: str, stage: Stage, **progress: Any) -> bool:
        """Record progress; False when the file is no longer ours (deleted, requeued)."""
        fields = {f"progress.{k}": v for k, v in progress.items()}
        result = self.col.update_one(
            {"_id": file_id, "status": FileStatus.PROCESSING.value},
            {"$set": {"stage": stage.value, "updated_at": now(), "heartbeat_at": now(), **fields}},
        )
        return result.matched_count == 1

    def heartbeat(self, file_id: str) -> bool:
        result = self.col.update_one(
            {"_id": file_id, "status": FileStatus.PROCESSING.value}, {"$set": {"heartbeat_at": now()}}
        )
        return result.matched_count == 1

    def finish(self, file_id: str, **fields: Any) -> bool:
        return self._move(file_id, FileStatus.PROCESSING, FileStatus.EMBEDDED, **fields)

    def fail(self, file_id: str, code: ErrorCode, message: str | None = None) -> bool:
        return self._move(file_id, FileStatus.PROCESSING, FileStatus.FAILED, error=error_doc(code, message))

    def hand_back(self, file_id: str, last_error: str) -> bool:
        """processing -> queued after a transient failure; the retry claims it again."""
        return self._move(file_id, FileStatus.PROCESSING, FileStatus.QUEUED, queued_at=now(), last_error=last_error)

    # --- the watchdog's queries ---------------------------------------------------

    def silent_processing(self, cutoff: datetime) -> list[dict[str, Any]]:
        return list(self.col.find({"status": FileStatus.PROCESSING.value, "heartbeat_at": {"$lt": cutoff}}))

    def requeue_lost(self, file_id: str, cutoff: datetime, last_error: str) -> bool:
        """processing -> queued, only if its heartbeat is still older than `cutoff`."""
        extra = {"heartbeat_at": {"$lt": cutoff}}
        return self._move(
            file_id,
            FileStatus.PROCESSING,
            FileStatus.QUEUED,
            extra_filter=extra,
            queued_at=now(),
            last_error=last_error,
        )

    def fail_lost(self, file_id: str, cutoff: datetime) -> bool:
        extra = {"heartbeat_at": {"$lt": cutoff}}
        err = error_doc(ErrorCode.WORKER_LOST)
        return self._move(file_id, FileStatus.PROCESSING, FileStatus.FAILED, extra_filter=extra, error=err)

    def in_state_since(self, status: FileStatus, field: str, cutoff: datetime) -> list[dict[str, Any]]:
        return list(self.col.find({"status": status.value, field: {"$lt": cutoff}}))

    def existing_ids(self, file_ids: list[str]) -> set[str]:
        return {d["_id"] for d in self.col.find({"_id": {"$in": file_ids}}, {"_id": 1})}

    def delete(self, file_id: str) -> None:
        self.col.delete_one({"_id": file_id})


def ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)
