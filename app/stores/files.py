"""File status documents in MongoDB (`files`): async for the API, sync for workers.

Every status change goes through `app.status.transition`, filtered by `_id`
(SecantusDB and DocumentDB both want the `_id` in a find-and-modify).
"""

from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient, ReturnDocument

from app.status import ErrorCode, FileStatus, Stage, error_doc, now, transition

INDEXES = [
    ([("tenant", ASCENDING), ("created_at", DESCENDING)], {}),
    ([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)], {}),
    ([("tenant", ASCENDING), ("sha256", ASCENDING)], {}),
]


class FileStore:
    """The API's view of `files` (async)."""

    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.client = client
        self.col = client[db_name]["files"]

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

    async def update_fields(self, file_id: str, **fields: Any) -> None:
        await self.col.update_one({"_id": file_id}, {"$set": {**fields, "updated_at": now()}})

    async def mark_queued(self, file_id: str, **fields: Any) -> bool:
        flt, upd = transition(FileStatus.SAVING, FileStatus.QUEUED, queued_at=now(), **fields)
        return await self.col.find_one_and_update({"_id": file_id, **flt}, upd) is not None

    async def get(self, tenant: str, file_id: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": file_id, "tenant": tenant})

    async def list(
        self, tenant: str, status: FileStatus | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        flt: dict[str, Any] = {"tenant": tenant}
        if status:
            flt["status"] = status.value
        total = await self.col.count_documents(flt)
        cursor = self.col.find(flt).sort("created_at", DESCENDING).skip(offset).limit(limit)
        return await cursor.to_list(length=limit), total

    async def delete(self, file_id: str) -> None:
        await self.col.delete_one({"_id": file_id})


class SyncFileStore:
    """A worker's view of `files` (sync)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.col = client[db_name]["files"]

    def get(self, file_id: str) -> dict[str, Any] | None:
        return self.col.find_one({"_id": file_id})

    def _move(self, file_id: str, current: FileStatus, new: FileStatus, **fields: Any) -> dict | None:
        flt, upd = transition(current, new, **fields)
        return self.col.find_one_and_update({"_id": file_id, **flt}, upd, return_document=ReturnDocument.AFTER)

    def claim(self, file_id: str) -> dict[str, Any] | None:
        """queued -> processing, atomically: a second claim of the same file gets None."""
        return self._move(file_id, FileStatus.QUEUED, FileStatus.PROCESSING, stage=Stage.DOWNLOAD.value)

    def set_stage(self, file_id: str, stage: Stage, **progress: Any) -> None:
        fields = {f"progress.{k}": v for k, v in progress.items()}
        self.col.update_one(
            {"_id": file_id, "status": FileStatus.PROCESSING.value},
            {"$set": {"stage": stage.value, "updated_at": now(), **fields}},
        )

    def finish(self, file_id: str, **fields: Any) -> bool:
        return self._move(file_id, FileStatus.PROCESSING, FileStatus.EMBEDDED, **fields) is not None

    def fail(self, file_id: str, code: ErrorCode, message: str | None = None) -> bool:
        doc = self._move(file_id, FileStatus.PROCESSING, FileStatus.FAILED, error=error_doc(code, message))
        return doc is not None
