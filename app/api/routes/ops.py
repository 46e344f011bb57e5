"""Operations: liveness, readiness, Prometheus metrics, host metrics.

`/health` and `/ready` are open (probes carry no key; `/ready` says which dependency
failed, its error text scrubbed of credentials). `/metrics` wants the METRICS_TOKEN
(Prometheus), `/system-metrics` the METRICS_TOKEN or an `admin` API key.
"""

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.auth import is_operator, metrics_access, operator_access
from app.api.deps import SettingsDep, StoresDep
from app.api.errors import responses
from app.observability.api_metrics import StoreGauges, render_api_metrics
from app.observability.logs import redact
from app.settings import Settings
from app.stores import Stores
from app.stores.blobs import DiskBlobs

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Touches no dependency."""
    return {"status": "ok"}


# --- readiness -------------------------------------------------------------------------------


async def _mongodb(stores: Stores, settings: Settings) -> None:
    await stores.files.client.admin.command("ping")


async def _valkey(stores: Stores, settings: Settings) -> None:
    await anyio.to_thread.run_sync(stores.jobs.connection.ping, abandon_on_cancel=True)


async def _postgresql(stores: Stores, settings: Settings) -> None:
    async with stores.chunks.pool.connection(timeout=settings.dependency_timeout_s) as conn:
        await conn.execute("SELECT 1")


def _storage_sync(stores: Stores) -> None:
    blobs = stores.blobs
    if isinstance(blobs, DiskBlobs):  # the uploads directory takes a write
        blobs.root.mkdir(parents=True, exist_ok=True)
        probe = blobs.root / f".ready-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"ok")
        probe.unlink()
    else:  # the bucket answers and we may use it
        blobs.client.head_bucket(Bucket=blobs.bucket)


async def _storage(stores: Stores, settings: Settings) -> None:
    await anyio.to_thread.run_sync(_storage_sync, stores, abandon_on_cancel=True)


CHECKS: dict[str, Callable[[Stores, Settings], Awaitable[None]]] = {
    "mongodb": _mongodb,
    "valkey": _valkey,
    "postgresql": _postgresql,
    "storage": _storage,
}


async def _run_checks(stores: Stores, settings: Settings) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    timeout = settings.dependency_timeout_s + 0.5

    async def run(name: str, check: Callable[[Stores, Settings], Awaitable[None]]) -> None:
        start = time.perf_counter()
        try:
            with anyio.fail_after(timeout):
                await check(stores, settings)
            result: dict[str, Any] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure makes the dependency not ready
            text = f"{type(exc).__name__}: {redact(str(exc))}" if str(exc) else type(exc).__name__
            result = {"ok": False, "error": text[:300]}
        result["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
        results[name] = result

    async with anyio.create_task_group() as tg:
        for name, check in CHECKS.items():
            tg.start_soon(run, name, check)
    return {name: results[name] for name in CHECKS}


class ReadyCache:
    """The last checks' result, reused for READY_CACHE_S: probes and strangers calling /ready in a
    loop cost the servers one round of checks per interval per API process, not one per call."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.lock = anyio.Lock()
        self.at = -float("inf")
        self.checks: dict[str, dict[str, Any]] = {}

    async def get(self, stores: Stores, settings: Settings) -> dict[str, dict[str, Any]]:
        async with self.lock:  # concurrent callers wait for one round of checks
            if time.monotonic() - self.at >= self.ttl_s:
                self.checks = await _run_checks(stores, settings)
                self.at = time.monotonic()
            return self.checks


@router.get(
    "/ready",
    responses={503: {"description": "a dependency failed; an operator sees which"}},
)
async def ready(request: Request, stores: StoresDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: MongoDB, Valkey, PostgreSQL and the file storage each answer, within
    `DEPENDENCY_TIMEOUT_S` (checked concurrently; the result is reused for READY_CACHE_S). 503
    when any fails. No key needed; each check's latency and error only for an operator (the
    METRICS_TOKEN or an `admin` key, or anyone with AUTH=disabled)."""
    cache = getattr(request.app.state, "ready_cache", None)
    if cache is None:
        cache = request.app.state.ready_cache = ReadyCache(settings.ready_cache_s)
    checks = await cache.get(stores, settings)
    ok = all(r["ok"] for r in checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "unavailable"}
    if await is_operator(request):
        body["checks"] = checks
    return JSONResponse(body, status_code=200 if ok else 503)


# --- metrics -----------------------------------------------------------------------------------


def _store_gauges(request: Request, settings: Settings) -> StoreGauges:
    gauges = getattr(request.app.state, "store_gauges", None)
    if gauges is None:
        gauges = request.app.state.store_gauges = StoreGauges(settings.metrics_cache_s)
    return gauges


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}, **responses(401, 503)},
)
async def metrics(request: Request, stores: StoresDep, settings: SettingsDep) -> Response:
    """Prometheus text format: this API's requests (all gunicorn workers added up) and the
    gauges read from MongoDB and RQ, for every tenant together (no tenant label). Needs
    `Authorization: Bearer <METRICS_TOKEN>`; a tenant's own counts are `GET /stats`.
    Each worker serves its own on `WORKER_METRICS_PORT`."""
    gauges = _store_gauges(request, settings)
    await gauges.refresh(stores, settings)
    body = await anyio.to_thread.run_sync(render_api_metrics, gauges)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _host_metrics(data_dir: Path) -> dict[str, Any]:
    import psutil

    disk_path = data_dir if data_dir.exists() else Path("/")
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    disk = psutil.disk_usage(str(disk_path))
    return {
        "cpu": {
            "count": psutil.cpu_count(),
            "percent": psutil.cpu_percent(interval=0.2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "memory": {
            "total_bytes": memory.total,
            "available_bytes": memory.available,
            "used_bytes": memory.total - memory.available,
            "percent": memory.percent,
        },
        "swap": {"total_bytes": swap.total, "used_bytes": swap.used, "percent": swap.percent},
        "disk": {
            "path": str(disk_path.resolve()),
            "total_bytes": disk.total,
            "used_bytes": disk.used,
            "free_bytes": disk.free,
            "percent": disk.percent,
        },
    }


@router.get("/system-metrics", dependencies=[Depends(operator_access)], responses=responses(401, 403, 503))
async def system_metrics(settings: SettingsDep) -> dict[str, Any]:
    """CPU (over 0.2 s), memory and disk (of `DATA_DIR`) usage of the host the API runs on (psutil)."""
    return await anyio.to_thread.run_sync(_host_metrics, settings.data_dir)
