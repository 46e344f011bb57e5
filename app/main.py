"""The API application: `create_app()` wires the stores from the settings."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from app.api import files, ops, search, uploads
from app.embedding import load_embedder
from app.settings import Settings, get_settings
from app.stores import Stores
from app.stores.blobs import make_blob_store
from app.stores.chunks import ChunkSearch, ensure_schema, make_pool
from app.stores.files import FileStore
from app.stores.jobs import JobQueue


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.database_url.get_secret_value()
        mongo = AsyncMongoClient(settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000, tz_aware=True)
        file_store = FileStore(mongo, settings.mongo_db)
        await file_store.ensure_indexes()
        await anyio.to_thread.run_sync(ensure_schema, database_url)
        pool = make_pool(database_url)
        await pool.open(wait=True, timeout=10)
        jobs = JobQueue(settings)
        app.state.settings = settings
        app.state.stores = Stores(
            files=file_store,
            chunks=ChunkSearch(pool, settings.hnsw_ef_search),
            blobs=make_blob_store(settings),
            jobs=jobs,
        )
        app.state.query_embedder = await anyio.to_thread.run_sync(
            load_embedder, settings, settings.query_embedding_runtime
        )
        try:
            yield
        finally:
            await pool.close()
            await mongo.close()
            jobs.close()

    app = FastAPI(
        title="docproc",
        summary="Upload documents; get them parsed, chunked, embedded and searchable.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (uploads, files, search, ops):
        app.include_router(module.router)
    return app
