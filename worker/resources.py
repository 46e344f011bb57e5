"""What a worker process holds across jobs: its clients and the embedding model.

Built once per process (the worker class runs jobs in-process, see rqworker.py).
"""

from dataclasses import dataclass
from functools import lru_cache

from pymongo import MongoClient

from app.embedding.embedder import Embedder, load_embedder, load_tokenizer, model_dir
from app.settings import Settings, get_settings
from app.stores.blobs import DiskBlobs, S3Blobs, make_blob_store
from app.stores.chunks.schema import ensure_schema
from app.stores.chunks.writer import ChunkIndex
from app.stores.files import SyncFileStore
from worker.chunking import Chunker


@dataclass
class Resources:
    settings: Settings
    files: SyncFileStore
    chunks: ChunkIndex
    blobs: DiskBlobs | S3Blobs
    embedder: Embedder
    chunker: Chunker


@lru_cache
def resources() -> Resources:
    settings = get_settings()
    database_url = settings.database_url.get_secret_value()
    ensure_schema(database_url)
    mongo = MongoClient(settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000, maxIdleTimeMS=60_000)
    tokenizer = load_tokenizer(model_dir(settings))
    return Resources(
        settings=settings,
        files=SyncFileStore(mongo, settings.mongo_db),
        chunks=ChunkIndex(database_url),
        blobs=make_blob_store(settings),
        embedder=load_embedder(settings),
        chunker=Chunker(tokenizer, settings.chunk_max_tokens, settings.chunk_overlap_tokens),
    )
