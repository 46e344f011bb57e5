"""Removing a file: marked `deleting` first (a job working on it stops at its next checkpoint, and
the watchdog finishes a delete whose request died), then its job, chunks, stored bytes and status
document, each step idempotent. `DELETE /files/{id}` and the MCP `delete_document` tool."""

import anyio

from app.status import FileStatus
from app.stores import Stores


class NotRemovable(Exception):
    """`code`: file_not_found (unknown, or another tenant's) or upload_in_progress."""

    FILE_NOT_FOUND = "file_not_found"
    UPLOAD_IN_PROGRESS = "upload_in_progress"

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


async def remove(stores: Stores, tenant: str, file_id: str) -> None:
    """Remove the tenant's file and everything made from it; NotRemovable when it cannot be."""
    if not await stores.files.mark_deleting(tenant, file_id):
        current = await stores.files.get(tenant, file_id)
        if current is None:
            raise NotRemovable(NotRemovable.FILE_NOT_FOUND, f"No file {file_id}.")
        if current["status"] == FileStatus.SAVING.value:
            raise NotRemovable(NotRemovable.UPLOAD_IN_PROGRESS, "The file is still being uploaded.")
        # already `deleting`: finish the job here too (every step is idempotent)
    await anyio.to_thread.run_sync(stores.jobs.cancel, file_id)
    await stores.chunks.delete_file(tenant, file_id)
    await stores.blobs.delete_file(file_id)
    await stores.files.delete(tenant, file_id)
    stores.files.forget_pending(tenant)
