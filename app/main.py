"""The API application: `create_app()` wires the stores from the settings."""

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis.exceptions
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from app import scratch
from app.answering.llm import ChatClient
from app.api import errors
from app.api.auth import check_bind
from app.api.middleware import BodyLimit, LoopbackOnly, RequestObservability
from app.api.ratelimit import RateLimits
from app.api.routes import admin, answers, dify, files, ops, search, uploads
from app.embedding.embedder import load_embedder
from app.mcp import server as mcp
from app.observability.logs import setup_logging
from app.settings import Settings, get_settings
from app.stores import Stores
from app.stores.blobs import make_blob_store
from app.stores.chunks.reader import ChunkSearch, make_pool
from app.stores.chunks.schema import ensure_schema
from app.stores.files import FileStore
from app.stores.idempotency import IdempotencyStore
from app.stores.interactions import InteractionStore
from app.stores.jobs import JobQueue
from app.stores.keys import KeyStore

log = logging.getLogger("app")


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
    check_bind(settings)  # AUTH=disabled only on a loopback bind
    if settings.auth == "disabled":
        log.warning("AUTH=disabled: every caller is tenant %r with every scope (API_BIND %s)",
                    settings.default_tenant, settings.api_bind)  # fmt: skip
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
        idempotency = IdempotencyStore(mongo, settings.mongo_db, settings.idempotency_ttl_s, settings.saving_timeout_s)
        await anyio.to_thread.run_sync(scratch.sweep, scratch.root(settings))  # what a kill -9 left behind
        keys = KeyStore(mongo, settings.mongo_db)
        await file_store.ensure_indexes()
        await idempotency.ensure_indexes()
        await keys.ensure_indexes()
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
            chunks=ChunkSearch(pool),
            blobs=make_blob_store(settings),
            jobs=jobs,
            idempotency=idempotency,
            keys=keys,
            audit=keys.audit,
            interactions=interactions,
        )
        app.state.limiter = RateLimits(settings)
        app.state.llm = ChatClient.from_settings(settings)  # None: no LLM_BASE_URL (extractive answers)
        app.state.query_embedder = await anyio.to_thread.run_sync(
            load_embedder, settings, settings.query_embedding_runtime
        )
        try:
            async with mcp_sessions.run():  # the MCP transport's task group (stateless: no sessions kept)
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
    for module in (uploads, files, search, answers, admin, ops, dify):
        app.include_router(module.router)
    app.include_router(files.stats_router)
    mcp_sessions = mcp.mount(app, settings)  # /mcp: the MCP server, behind the same API keys
    errors.install(app)  # every exception a request may raise -> its status and coded body
    upload_limit = settings.max_upload_bytes * settings.max_files_per_request + 1024 * 1024
    mcp_limit = math.ceil(settings.mcp_max_upload_bytes * 4 / 3) + 64 * 1024  # a base64 document in JSON-RPC
    app.add_middleware(BodyLimit, upload_limit=upload_limit, other_limit=settings.max_json_bytes, mcp_limit=mcp_limit)
    if settings.auth == "disabled":
        app.add_middleware(LoopbackOnly)
    app.add_middleware(RequestObservability)  # request id, one log line and metrics per request (outermost)
    return app
