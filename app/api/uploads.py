from fastapi import APIRouter, Request

from app.api.deps import SettingsDep, StoresDep, TenantDep
from app.api.errors import http_error
from app.models import UploadedFile, UploadResponse
from app.multipart import MultipartError
from app.status import FileStatus
from app.upload import Receiver, UploadRejected

router = APIRouter(tags=["files"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}


@router.post(
    "/upload",
    status_code=202,
    response_model=UploadResponse,
    openapi_extra=_BODY,
    responses={413: {}, 415: {}, 422: {}, 503: {}},
)
async def upload(request: Request, tenant: TenantDep, stores: StoresDep, settings: SettingsDep) -> UploadResponse:
    """Upload one or many files (`files` parts). Returns at once with each file's id;
    poll `GET /files/{id}` until `embedded` or `failed`."""
    limit = settings.max_upload_bytes * settings.max_files_per_request + 1024 * 1024
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise http_error(413, "request_too_large", f"The request body is larger than {limit} bytes.")
    receiver = Receiver(request, tenant, stores, settings)
    try:
        files = await receiver.receive()
    except UploadRejected as exc:
        raise http_error(exc.status, exc.code, exc.message) from exc
    except MultipartError as exc:
        raise http_error(400, "malformed_multipart", str(exc)) from exc
    try:
        await receiver.queue_all()
    except Exception as exc:
        await receiver.rollback()
        raise http_error(
            503,
            "queue_unavailable",
            "The job queue is unavailable; nothing was stored. Retry later.",
            headers={"Retry-After": "5"},
        ) from exc
    return UploadResponse(
        files=[
            UploadedFile(
                file_id=f.file_id,
                filename=f.filename,
                content_type=f.content_type or "",
                size=f.size,
                sha256=f.sha256,
                status=FileStatus.QUEUED,
                status_url=f"/files/{f.file_id}",
            )
            for f in files
        ]
    )
