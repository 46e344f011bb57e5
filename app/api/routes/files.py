import uuid

import anyio
from fastapi import APIRouter, Query, Response

from app.api.deps import ReadTenant, SettingsDep, StoresDep, WriteTenant
from app.api.errors import AUTHED, ApiError, http_error, responses
from app.api.schemas import FileList, FileOut, TenantStats
from app.status import FileStatus

router = APIRouter(prefix="/files", tags=["files"])
stats_router = APIRouter(tags=["files"])


@router.get("", response_model=FileList, responses=responses(*AUTHED, 422))
async def list_files(
    tenant: ReadTenant,
    stores: StoresDep,
    status: FileStatus | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> FileList:
    """The caller's tenant's files, newest first."""
    docs, total = await stores.files.list(tenant, status, limit, offset)
    return FileList(items=[FileOut.from_doc(d) for d in docs], total=total, limit=limit, offset=offset)


@router.get("/{file_id}", response_model=FileOut, responses=responses(*AUTHED, 404, 422))
async def get_file(file_id: uuid.UUID, tenant: ReadTenant, stores: StoresDep) -> FileOut:
    """A file's status. Another tenant's file is 404, as if it did not exist."""
    doc = await stores.files.get(tenant, str(file_id))
    if doc is None:
        raise http_error(404, ApiError.FILE_NOT_FOUND, f"No file {file_id}.")
    return FileOut.from_doc(doc)


@router.delete("/{file_id}", status_code=204, responses=responses(*AUTHED, 404, 409, 422))
async def delete_file(file_id: uuid.UUID, tenant: WriteTenant, stores: StoresDep) -> Response:
    """Remove the file's stored bytes, its chunks and its status document.

    The file is first marked `deleting`: a job working on it stops at its next
    checkpoint, and if this request dies half-way the watchdog finishes the delete.
    """
    fid = str(file_id)
    if not await stores.files.mark_deleting(tenant, fid):
        current = await stores.files.get(tenant, fid)
        if current is None:
            raise http_error(404, ApiError.FILE_NOT_FOUND, f"No file {file_id}.")
        if current["status"] == FileStatus.SAVING.value:
            raise http_error(409, ApiError.UPLOAD_IN_PROGRESS, "The file is still being uploaded.")
        # already `deleting`: finish the job here too (every step is idempotent)
    await anyio.to_thread.run_sync(stores.jobs.cancel, fid)
    await stores.chunks.delete_file(tenant, fid)
    await stores.blobs.delete_file(fid)
    await stores.files.delete(tenant, fid)
    stores.files.forget_pending(tenant)
    return Response(status_code=204)


@stats_router.get("/stats", response_model=TenantStats, responses=responses(*AUTHED))
async def stats(tenant: ReadTenant, stores: StoresDep, settings: SettingsDep) -> TenantStats:
    """The caller's tenant's files by status and failed files by error code (the tenant's view of
    `docproc_files`), and how many are pending (saving, queued, processing) out of
    MAX_PENDING_FILES_PER_TENANT."""
    by_status, failed = await stores.files.tenant_counts(tenant)
    pending = sum(by_status.get(s.value, 0) for s in PENDING)
    return TenantStats(
        tenant=tenant,
        files=by_status,
        failed=failed,
        pending=pending,
        max_pending=settings.max_pending_files_per_tenant,
    )


PENDING = (FileStatus.SAVING, FileStatus.QUEUED, FileStatus.PROCESSING)
