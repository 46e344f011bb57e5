"""Accepting an upload: the tenant's queue cap, receiving every file (app/intake/receiver.py), then
queueing them all, or rolling the whole request back. One outcome for every failure the caller can
cause or meet: `UploadRejected` with its HTTP status, stable code and message (and `retry_after`).
`POST /upload` and the MCP `upload_document` tool both come through here."""

import anyio
import redis.exceptions

from app.intake.multipart import MultipartError, TruncatedBody
from app.intake.receiver import QUEUE_FULL_RETRY_S, IncomingFile, Receiver, UploadRejected
from app.settings import Settings
from app.stores import Stores

QUEUE_FULL = "This tenant has MAX_PENDING_FILES_PER_TENANT files waiting or being processed; retry when some are done."


async def accept(receiver: Receiver, tenant: str, stores: Stores, settings: Settings) -> list[IncomingFile]:
    """Every file of the request, received and queued (duplicates answered with the file they repeat);
    or nothing kept and UploadRejected. MongoDB away still raises its own error (503 upstream)."""
    # the body's size (Content-Length, and as it streams) is bounded by app.api.middleware.BodyLimit
    cap = settings.max_pending_files_per_tenant
    if cap and await stores.files.count_pending(tenant) >= cap:  # before reading the body; again per file
        raise UploadRejected(429, "tenant_queue_full", QUEUE_FULL, retry_after=QUEUE_FULL_RETRY_S)
    try:
        files = await receiver.receive()
    except TruncatedBody as exc:
        raise UploadRejected(400, "truncated_multipart", str(exc)) from exc
    except MultipartError as exc:
        raise UploadRejected(400, "malformed_multipart", str(exc)) from exc
    try:
        await receiver.queue_all()
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await receiver.rollback()
        stores.files.forget_pending(tenant)
        if isinstance(exc, redis.exceptions.RedisError):
            raise UploadRejected(
                503, "queue_unavailable", "The job queue is unavailable; nothing was stored. Retry later.", 5
            ) from exc
        raise  # UploadRejected (408), MongoDB away (503 upstream); anything else is ours
    return files
