"""The API application: `create_app()` wires the stores from the settings."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import psycopg
import psycopg_pool
import pymongo.errors
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient

from app.api import answers, files, ops, search, uploads
from app.embedding import load_embedder
from app.logs import setup_logging
from app.middleware import RequestObservability
from app.retrieval.llm import ChatClient
from app.settings import Settings, get_settings
from app.stores import Stores
from app.stores.blobs import make_blob_store
from app.stores.chunks import ChunkSearch, ensure_schema, make_pool
from app.stores.files import FileStore
from app.stores.idempotency import IdempotencyStore
from app.stores.interactions import InteractionStore
from app.stores.jobs import JobQueue

log = logging.getLogger("app")

# a server the API needs is away: answer 503 at once rather than hang or 500
DEPENDENCY_ERRORS: dict[type[Exception], str] = {
    pymongo.errors.ConnectionFailure: "MongoDB",
    psycopg.OperationalError: "PostgreSQL",
    psycopg_pool.PoolTimeout: "PostgreSQL",
    redis.exceptions.ConnectionError: "Valkey",
    redis.exceptions.TimeoutError: "Valkey",
}


def _dependency_handler(server: str):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable during %s %s: %s", server, request.method, request.url.path, type(exc).__name__)
        return JSONResponse(
            {"detail": {"code": "dependency_unavailable", "message": f"{server} is unavailable; retry later."}},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return handler


def _warn_on_eviction(jobs: JobQueue) -> None:
    try:
        policy = jobs.connection.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.exceptions.RedisError:
        return  # managed services may refuse CONFIG; their parameter group is checked at deploy time
    if policy != "noeviction":
        log.warning("Valkey maxmemory-policy is %r, not 'noeviction': queued jobs can be evicted", policy)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging(settings, "api")  # JSON lines (LOG_FORMAT), optional GELF
    timeout_ms = int(settings.dependency_timeout_s * 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.database_url.get_secret_value()
        mongo = AsyncMongoClient(
            settings.mongo_url.get_secret_value(),
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=10_000,
            # writes are not retried (DocumentDB: retryWrites=false), so never hand one a socket
            # the server may have dropped while idle
            maxIdleTimeMS=60_000,
            tz_aware=True,
        )
        file_store = FileStore(mongo, settings.mongo_db)
        idempotency = IdempotencyStore(mongo, settings.mongo_db, settings.idempotency_ttl_s)
        await file_store.ensure_indexes()
        await idempotency.ensure_indexes()
        interactions = InteractionStore(mongo, settings.mongo_db) if settings.interactions_log else None
        if interactions is not None:
            await interactions.ensure_indexes()
        await anyio.to_thread.run_sync(ensure_schema, database_url)
        pool = make_pool(database_url, settings.dependency_timeout_s)
        await pool.open(wait=True, timeout=10)
        jobs = JobQueue(settings)
        await anyio.to_thread.run_sync(_warn_on_eviction, jobs)
        app.state.settings = settings
        app.state.stores = Stores(
            files=file_store,
            chunks=ChunkSearch(pool, settings.hnsw_ef_search),
            blobs=make_blob_store(settings),
            jobs=jobs,
            idempotency=idempotency,
            interactions=interactions,
        )
        app.state.llm = ChatClient.from_settings(settings)  # None: no LLM_BASE_URL (extractive answers)
        app.state.query_embedder = await anyio.to_thread.run_sync(
            load_embedder, settings, settings.query_embedding_runtime
        )
        try:
            yield
        finally:
            if app.state.llm is not None:
                await app.state.llm.aclose()
            await pool.close()
            await mongo.close()
            jobs.close()

    app = FastAPI(
        title="docproc",
        summary="Upload documents; get them parsed, chunked, embedded and searchable.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (uploads, files, search, answers, ops):
        app.include_router(module.router)
    for exc_type, server in DEPENDENCY_ERRORS.items():
        app.add_exception_handler(exc_type, _dependency_handler(server))
    app.add_middleware(RequestObservability)  # request id, one log line and metrics per request
    return app
