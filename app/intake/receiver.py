"""Receiving an upload: each file streamed to storage while hashed and measured.

A request is all or nothing: if any file is refused (too large, unsupported,
empty), the body is cut short or the client goes away, every file of the request
is rolled back (bytes and status documents) and none is queued. Files are queued
only once the whole body has arrived, so no job can start on a file whose request
later fails.

While it is received, a file is `saving` under the request's lease (app/lease.py),
renewed every quarter of SAVING_TIMEOUT_S while bytes arrive: however slow the
client, the watchdog leaves the upload alone; if the client stalls past the lease,
the watchdog removes it and the request answers 408 `upload_expired`, never 202.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from pymongo.errors import ConnectionFailure
from starlette.requests import Request

from app import lease
from app.intake import filetypes, metadata
from app.intake.filenames import display_name, safe_name
from app.intake.multipart import PartData, PartEnd, PartStart, events
from app.settings import Settings
from app.status import ErrorCode, FileStatus
from app.stores import Stores
from app.stores.blobs import BlobWriter

log = logging.getLogger("app.upload")


class UploadRejected(Exception):
    """An upload refused: nothing of it was kept. `retry_after` (seconds) when retrying later may succeed."""

    def __init__(self, status: int, code: ErrorCode | str, message: str, retry_after: int | None = None) -> None:
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after
        super().__init__(message)


@dataclass
class IncomingFile:
    file_id: str
    filename: str
    declared_type: str
    key: str
    size: int = 0
    content_type: str | None = None
    head: bytearray = field(default_factory=bytearray)
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    writer: BlobWriter | None = None
    committed: bool = False
    doc_created: bool = False
    duplicate_of: str | None = None
    duplicate_status: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)  # the `metadata` / `file_metadata` parts

    @property
    def sha256(self) -> str:
        return self.hasher.hexdigest()


QUEUE_FULL_RETRY_S = 30  # the Retry-After of tenant_queue_full
EXPIRED = "The upload stalled for longer than SAVING_TIMEOUT_S and was discarded; nothing was kept. Send it again."


class RequestDigest:
    """What makes two upload requests the same (an Idempotency-Key's fingerprint): SHA-256 over the
    tenant and every part's name, filename and content, in order."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.parts: list[tuple[str, str | None, str]] = []
        self._part: PartStart | None = None
        self._hasher = hashlib.sha256()

    def start(self, part: PartStart) -> None:
        self._part, self._hasher = part, hashlib.sha256()

    def data(self, data: bytes) -> None:
        self._hasher.update(data)

    def end(self, content_sha256: str | None = None) -> None:
        """A part ended; `content_sha256` when its bytes were hashed elsewhere (a file's own hash)."""
        if self._part is not None:
            self.parts.append((self._part.name, self._part.filename, content_sha256 or self._hasher.hexdigest()))
            self._part = None

    def hexdigest(self) -> str:
        return hashlib.sha256(json.dumps([self.tenant, self.parts]).encode()).hexdigest()


async def digest_only(request: Request, tenant: str) -> str:
    """The request's digest, reading its body and storing nothing (to compare a retry with the first)."""
    digest = RequestDigest(tenant)
    async for ev in events(request):
        if isinstance(ev, PartStart):
            digest.start(ev)
        elif isinstance(ev, PartData):
            digest.data(ev.data)
        else:
            digest.end()
    return digest.hexdigest()


class Receiver:
    def __init__(
        self,
        request: Request,
        tenant: str,
        stores: Stores,
        settings: Settings,
        owner: str,
        renew_also: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.request = request
        self.tenant = tenant
        self.stores = stores
        self.settings = settings
        self.files: list[IncomingFile] = []
        self.mongo_down = False  # skip MongoDB in a rollback once it has failed to answer
        self.fields: dict[str, bytearray] = {}  # metadata parts (app/intake/metadata.py), before or after files
        self.digest = RequestDigest(tenant)
        self.owner = owner  # who holds the lease of the request's files (app/lease.py)
        self.renew_also = renew_also  # another lease this request holds (its Idempotency-Key)
        self.renewer = lease.Renewer(self._renew, settings.saving_timeout_s / 4)

    async def _renew(self) -> bool:
        ids = [f.file_id for f in self.files if not f.duplicate_of]
        ttl = self.settings.saving_timeout_s
        ok = not ids or await self.stores.files.renew_saving(self.tenant, ids, self.owner, ttl)
        if self.renew_also is not None:
            ok = await self.renew_also() and ok
        return ok

    async def _keep_lease(self) -> None:
        if not await self.renewer.tick():
            raise UploadRejected(408, "upload_expired", EXPIRED)

    async def receive(self) -> list[IncomingFile]:
        current: IncomingFile | None = None
        field_buf: bytearray | None = None
        try:
            async for ev in events(self.request):
                await self._keep_lease()
                if isinstance(ev, PartStart):
                    self.digest.start(ev)
                    field_buf = self._field(ev.name) if ev.name in metadata.PARTS else None
                    current = await self._start(ev) if ev.filename is not None and field_buf is None else None
                elif isinstance(ev, PartData) and current is not None:
                    await self._feed(current, ev.data)
                elif isinstance(ev, PartData):
                    self.digest.data(ev.data)
                    if field_buf is not None:
                        field_buf += ev.data
                        if len(field_buf) > metadata.MAX_BYTES:
                            raise UploadRejected(422, "invalid_metadata", "A metadata part is larger than 16 KB.")
                elif isinstance(ev, PartEnd):
                    self.digest.end(current.sha256 if current is not None else None)
                    if current is not None:
                        await self._finish(current)
                    current = None
            if not self.files:
                raise UploadRejected(422, ErrorCode.EMPTY_FILE, "No file in the request: send `files` parts.")
            self._apply_metadata()
            return self.files
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.rollback()
            raise

    def _field(self, name: str) -> bytearray:
        if name in self.fields:
            raise UploadRejected(422, "invalid_metadata", f"The {name!r} part is sent more than once.")
        return self.fields.setdefault(name, bytearray())

    def _apply_metadata(self) -> None:
        try:
            by_name = metadata.per_file({k: bytes(v) for k, v in self.fields.items()}, (f.filename for f in self.files))
        except metadata.InvalidMetadata as exc:
            raise UploadRejected(422, "invalid_metadata", str(exc)) from exc
        for f in self.files:
            f.metadata = by_name[f.filename]

    async def _start(self, part: PartStart) -> IncomingFile:
        if len(self.files) >= self.settings.max_files_per_request:
            raise UploadRejected(
                422,
                ErrorCode.TOO_MANY_FILES,
                f"At most {self.settings.max_files_per_request} files per request.",
            )
        cap = self.settings.max_pending_files_per_tenant
        if cap and await self.stores.files.count_pending(self.tenant) >= cap:  # other requests' files count too
            raise UploadRejected(
                429,
                "tenant_queue_full",
                f"This request would take the tenant past {cap} files waiting "
                "or being processed (MAX_PENDING_FILES_PER_TENANT); nothing was kept. Retry when some are done.",
                retry_after=QUEUE_FULL_RETRY_S,
            )
        file_id = str(uuid.uuid4())
        name = safe_name(part.filename)
        incoming = IncomingFile(
            file_id=file_id,
            filename=display_name(part.filename),
            declared_type=part.content_type,
            key=f"{file_id}/{name}",
        )
        self.files.append(incoming)
        incoming.doc_created = True  # before the insert: if it times out, the document may still exist
        try:
            await self._create_doc(incoming, part)
        except ConnectionFailure:
            self.mongo_down = True
            raise
        return incoming

    async def _create_doc(self, incoming: IncomingFile, part: PartStart) -> None:
        await self.stores.files.create(
            {
                "_id": incoming.file_id,
                "tenant": self.tenant,
                "filename": incoming.filename,
                "declared_content_type": part.content_type,
                "storage_key": incoming.key,
                "storage": self.settings.storage,
            },
            self.owner,
            self.settings.saving_timeout_s,
        )

    async def _feed(self, f: IncomingFile, data: bytes) -> None:
        f.size += len(data)
        if f.size > self.settings.max_upload_bytes:
            raise UploadRejected(
                413,
                ErrorCode.FILE_TOO_LARGE,
                f"{f.filename!r} is larger than the limit of {self.settings.max_upload_bytes} bytes.",
            )
        f.hasher.update(data)
        if f.writer is None:
            f.head += data
            if len(f.head) >= filetypes.SNIFF_BYTES:
                await self._open(f)
        else:
            await f.writer.write(data)

    async def _open(self, f: IncomingFile) -> None:
        """Decide the type from the first bytes, then start writing."""
        try:
            f.content_type = filetypes.sniff(bytes(f.head[: filetypes.SNIFF_BYTES]), f.filename, f.declared_type)
        except filetypes.ContentTypeMismatch as exc:
            raise UploadRejected(415, exc.code, exc.message) from exc
        if f.content_type is None:
            raise UploadRejected(
                415,
                ErrorCode.UNSUPPORTED_TYPE,
                f"{f.filename!r} is not a supported type. Supported: {', '.join(filetypes.SUPPORTED)}.",
            )
        f.writer = await self.stores.blobs.open_writer(f.key)
        await f.writer.write(bytes(f.head))
        f.head.clear()

    async def _finish(self, f: IncomingFile) -> None:
        if f.size == 0:
            raise UploadRejected(422, ErrorCode.EMPTY_FILE, f"{f.filename!r} is empty.")
        if f.writer is None:
            await self._open(f)
        await f.writer.commit()
        f.committed = True
        if self.settings.dedup != "allow":
            await self._dedup(f)

    async def _dedup(self, f: IncomingFile) -> None:
        """Same content already here (for this tenant): refuse it, or answer with the existing file."""
        earlier = next((o for o in self.files if o is not f and o.sha256 == f.sha256 and not o.duplicate_of), None)
        if earlier is not None:
            existing_id, existing_status = earlier.file_id, FileStatus.QUEUED.value
        else:
            doc = await self.stores.files.find_duplicate(self.tenant, f.sha256)
            if doc is None:
                return
            existing_id, existing_status = doc["_id"], doc["status"]
        if self.settings.dedup == "reject":
            message = f"{f.filename!r} has the same content as file {existing_id}."
            raise UploadRejected(409, ErrorCode.DUPLICATE, message)
        await self.stores.blobs.delete_file(f.file_id)
        await self.stores.files.delete(self.tenant, f.file_id)
        f.duplicate_of, f.duplicate_status = existing_id, existing_status

    async def queue_all(self) -> None:
        """saving -> queued for every file, then their jobs: a job never finds its file still saving,
        and no job starts before the request knows it will answer 202.

        A file whose lease was lost (the watchdog removed the stalled upload) fails the request
        (UploadRejected 408): the caller rolls back, the client never sees 202 for it.
        """
        new = [f for f in self.files if not f.duplicate_of]
        for f in new:
            fields = {"size": f.size, "sha256": f.sha256, "content_type": f.content_type, "metadata": f.metadata}
            if not await self.stores.files.mark_queued(self.tenant, f.file_id, self.owner, **fields):
                raise UploadRejected(408, "upload_expired", EXPIRED)
        request_id = getattr(self.request.state, "request_id", None)
        for f in new:
            await anyio.to_thread.run_sync(self.stores.jobs.enqueue_file, f.file_id, f.size, request_id)

    async def rollback(self) -> None:
        """Remove every trace of this request's files; each step tried on its own.

        Once MongoDB fails to answer, its remaining steps are skipped so the error
        reaches the client fast; a `saving` document left behind is removed by the
        watchdog once its lease expires (SAVING_TIMEOUT_S).
        """
        for f in self.files:
            if f.writer is not None and not f.committed:
                await self._quietly(f, f.writer.abort())
            await self._quietly(f, anyio.to_thread.run_sync(self.stores.jobs.cancel, f.file_id))
            await self._quietly(f, self.stores.blobs.delete_file(f.file_id))
            if f.doc_created and not self.mongo_down:
                try:
                    await self.stores.files.delete(self.tenant, f.file_id)
                    self.stores.files.forget_pending(self.tenant)
                except ConnectionFailure:
                    self.mongo_down = True
                except Exception:
                    log.warning("rollback: status document of %s not removed", f.file_id, exc_info=True)

    @staticmethod
    async def _quietly(f: IncomingFile, step: Awaitable[object]) -> None:
        try:
            await step
        except Exception:
            log.warning("rollback step for file %s failed", f.file_id, exc_info=True)
