from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app import lease
from app.api.deps import SettingsDep, StoresDep, UploadTenant
from app.api.errors import AUTHED, ApiError, http_error, responses
from app.api.schemas import UploadedFile, UploadResponse
from app.intake.receiver import Receiver, digest_only

router = APIRouter(tags=["files"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1},
                        "metadata": {
                            "type": "string",
                            "description": "a JSON object applied to every file (at most 16 KB)",
                        },
                        "file_metadata": {
                            "type": "string",
                            "description": "JSON objects keyed by filename, merged over `metadata` (at most 16 KB)",
                        },
                    },
                }
            }
        },
    },
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "A retried request with the same key and body gets the first response (for 24 h).",
        }
    ],
}


@router.post(
    "/upload",
    status_code=202,
    response_model=UploadResponse,
    openapi_extra=_BODY,
    responses={
        200: {"model": UploadResponse, "description": "every file was already here (`duplicate_of`)"},
        **responses(*AUTHED, 400, 408, 409, 415, 422, 429, s409="duplicate, idempotency_key_in_use"),
    },
)
async def upload(request: Request, tenant: UploadTenant, stores: StoresDep, settings: SettingsDep) -> JSONResponse:
    """Upload one or many files (`files` parts). Returns at once with each file's id;
    poll `GET /files/{id}` until `embedded` or `failed`. 202 when anything new was
    accepted; 200 when every file was already here (`duplicate_of`, DEDUP=return_existing)."""
    owner = lease.owner_id(f"upload:{getattr(request.state, 'request_id', '')}")
    key = request.headers.get("idempotency-key")
    if key is None:
        receiver = Receiver(request, tenant, stores, settings, owner)
        status, body = await _receive(receiver)
        return JSONResponse(body, status_code=status)
    if not 0 < len(key) <= 200:
        raise http_error(422, ApiError.INVALID_IDEMPOTENCY_KEY, "Idempotency-Key must be 1 to 200 characters.")
    prior = await stores.idempotency.begin(tenant, key, owner)  # KeyInUse: 409 idempotency_key_in_use
    if prior is not None:
        return await _replay(request, tenant, prior)

    async def renew_key() -> bool:
        return await stores.idempotency.renew(tenant, key, owner)

    receiver = Receiver(request, tenant, stores, settings, owner, renew_also=renew_key)
    try:
        status, body = await _receive(receiver)
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled request still frees its key
            await stores.idempotency.release(tenant, key, owner)
        raise
    await stores.idempotency.complete(tenant, key, owner, receiver.digest.hexdigest(), status, body)
    return JSONResponse(body, status_code=status)


async def _replay(request: Request, tenant: str, prior: dict[str, Any]) -> JSONResponse:
    """The first response again, if this request is the same one (its parts' names and bytes)."""
    fingerprint = await digest_only(request, tenant)
    if prior.get("fingerprint") != fingerprint:
        raise http_error(422, ApiError.IDEMPOTENCY_KEY_REUSED, "This Idempotency-Key was used for a different request.")
    return JSONResponse(prior["body"], status_code=prior["status_code"], headers={"Idempotent-Replayed": "true"})


async def _receive(receiver: Receiver) -> tuple[int, dict]:
    # the body's size (Content-Length, and as it streams) is bounded by app.api.middleware.BodyLimit
    files = await receiver.accept()
    out = [UploadedFile.from_incoming(f) for f in files]
    status = 200 if all(f.duplicate_of for f in files) else 202
    return status, UploadResponse(files=out).model_dump(mode="json")
