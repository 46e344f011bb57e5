import uuid

from fastapi import APIRouter, Query, Response

from app.api.deps import ReadTenant, SettingsDep, StoresDep, WriteTenant
from app.api.errors import AUTHED, ApiError, http_error, responses
from app.api.schemas import FileList, FileOut, TenantStats
from app.intake.removal import remove
from app.status import FileStatus
from app.stores.storable import storable

router = APIRouter(prefix="/files", tags=["files"])
stats_router = APIRouter(tags=["files"])


@router.get("", response_model=FileList, responses=responses(*AUTHED, 422))
async def list_files(
    tenant: ReadTenant,
    stores: StoresDep,
    status: FileStatus | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    name: str | None = Query(None, min_length=1, max_length=500, description="a filename glob: `report-*.pdf`"),
) -> FileList:
    """The caller's tenant's files, newest first; `name` keeps those whose filename matches the glob
    (`*` any characters, `?` one; any case)."""
    if name is not None and not storable(name):
        raise http_error(422, ApiError.INVALID_REQUEST, "name: NUL characters and invalid Unicode are not allowed.")
    docs, total = await stores.files.list(tenant, status, limit, offset, name)
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
    await remove(stores, tenant, str(file_id))  # NotRemovable: 404 file_not_found, 409 upload_in_progress
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
