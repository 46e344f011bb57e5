import uuid

import anyio
from fastapi import APIRouter, Query, Response

from app.api.deps import StoresDep, TenantDep
from app.api.errors import http_error
from app.models import FileList, FileOut
from app.status import FileStatus

router = APIRouter(prefix="/files", tags=["files"])


@router.get("", response_model=FileList)
async def list_files(
    tenant: TenantDep,
    stores: StoresDep,
    status: FileStatus | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> FileList:
    docs, total = await stores.files.list(tenant, status, limit, offset)
    return FileList(items=[FileOut.from_doc(d) for d in docs], total=total, limit=limit, offset=offset)


@router.get("/{file_id}", response_model=FileOut, responses={404: {}})
async def get_file(file_id: uuid.UUID, tenant: TenantDep, stores: StoresDep) -> FileOut:
    doc = await stores.files.get(tenant, str(file_id))
    if doc is None:
        raise http_error(404, "file_not_found", f"No file {file_id}.")
    return FileOut.from_doc(doc)


@router.delete("/{file_id}", status_code=204, responses={404: {}, 409: {}})
async def delete_file(file_id: uuid.UUID, tenant: TenantDep, stores: StoresDep) -> Response:
    """Remove the file's stored bytes, its chunks and its status document.

    The file is first marked `deleting`: a job working on it stops at its next
    checkpoint, and if this request dies half-way the watchdog finishes the delete.
    """
    fid = str(file_id)
    doc = await stores.files.mark_deleting(tenant, fid)
    if doc is None:
        current = await stores.files.get(tenant, fid)
        if current is None:
            raise http_error(404, "file_not_found", f"No file {file_id}.")
        if current["status"] == FileStatus.SAVING.value:
            raise http_error(409, "upload_in_progress", "The file is still being uploaded.")
        # already `deleting`: finish the job here too (every step is idempotent)
    await anyio.to_thread.run_sync(stores.jobs.cancel, fid)
    await stores.chunks.delete_file(tenant, fid)
    await stores.blobs.delete_file(fid)
    await stores.files.delete(fid)
    return Response(status_code=204)
