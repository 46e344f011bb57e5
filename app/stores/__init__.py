"""Adapters to the servers, one module per backend."""

from dataclasses import dataclass

from app.stores.audit import AuditStore
from app.stores.blobs import DiskBlobs, S3Blobs
from app.stores.chunks.reader import ChunkSearch
from app.stores.files import FileStore
from app.stores.idempotency import IdempotencyStore
from app.stores.interactions import InteractionStore
from app.stores.jobs import JobQueue
from app.stores.keys import KeyStore


@dataclass
class Stores:
    """What the API's lifespan builds and the routers use."""

    files: FileStore
    chunks: ChunkSearch
    blobs: DiskBlobs | S3Blobs
    jobs: JobQueue
    idempotency: IdempotencyStore
    keys: KeyStore
    audit: AuditStore  # the key store's: it writes, GET /admin/audit reads
    interactions: InteractionStore | None = None  # None: INTERACTIONS_LOG=false
