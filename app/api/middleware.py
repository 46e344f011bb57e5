"""Per-request observability: request id, one log line, HTTP metrics (a plain ASGI middleware).

- The request id is the client's `X-Request-ID` when it looks like an id (1–128 of
  `A-Za-z0-9._:@/+=-`), else a new one; it is returned in the response's `X-Request-ID`,
  kept in `request.state.request_id` (the upload enqueues it with each file's job), and
  set in the log context so every line logged while serving the request carries it.
- Metrics are labelled with the matched route's template (`/files/{file_id}`), never the
  raw path, so their number stays bounded; a request no route matched is `unmatched`.
- The log line (logger `app.access`): method, route, path, status, response_time_ms,
  request_id, file_ids, client, bytes_in. Never a header: API keys stay out of the logs.

`BodyLimit` bounds every request body before anything buffers it: a declared
`Content-Length` over the limit is answered 413 `request_too_large` without reading a
byte, and a body that streams past it (chunked) is cut off with the same answer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import served_on_loopback
from app.observability.api_metrics import api_metrics
from app.observability.logs import REQUEST_ID_HEADER, accept_request_id, request_id_var

access_log = logging.getLogger("app.access")
UPLOAD_ROUTE = "/upload"
MCP_ROUTE = "/mcp"
_CAPTURE_LIMIT = 256 * 1024  # an upload's answer lists its files; read it for their ids up to this size


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path or "unmatched"


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        metrics = api_metrics()
        start = time.perf_counter()
        status = 500
        started = False
        bytes_in = 0
        captured: list[bytes] | None = None

        async def receive_counting() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def send_observed(message: Message) -> None:
            nonlocal status, started, captured
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers.setdefault("X-Content-Type-Options", "nosniff")  # never sniffed into HTML by a browser
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if route_template(scope) == UPLOAD_ROUTE and content_type.startswith("application/json"):
                    captured = []
            elif message["type"] == "http.response.body" and captured is not None and not _full(captured):
                captured.append(message.get("body", b""))
            await send(message)

        token = request_id_var.set(request_id)
        metrics.in_progress.inc()
        try:
            await self.app(scope, receive_counting, send_observed)
        except BaseException:
            if not started:
                status = 500  # the server's error middleware answers 500
            raise
        finally:
            metrics.in_progress.dec()
            elapsed = time.perf_counter() - start
            try:
                self._record(scope, status, elapsed, bytes_in, captured, request_id)
            finally:
                request_id_var.reset(token)

    @staticmethod
    def _record(
        scope: Scope, status: int, elapsed: float, bytes_in: int, captured: list[bytes] | None, request_id: str
    ) -> None:
        metrics = api_metrics()
        method = scope["method"]
        route = route_template(scope)
        metrics.requests.labels(method, route, str(status)).inc()
        metrics.latency.labels(method, route).observe(elapsed)
        if route == UPLOAD_ROUTE:
            metrics.upload_bytes.inc(bytes_in)
        file_ids = _file_ids(scope, captured)
        client = scope.get("client")
        access_log.info(
            "%s %s %d %.1f ms",
            method,
            route,
            status,
            elapsed * 1000,
            extra={
                "event": "request",
                "method": method,
                "route": route,
                "path": scope.get("path", ""),
                "status": status,
                "response_time_ms": round(elapsed * 1000, 1),
                "request_id": request_id,
                "file_ids": file_ids,
                "client": client[0] if client else None,
                "bytes_in": bytes_in,
            },
        )


def _full(parts: list[bytes]) -> bool:
    return sum(map(len, parts)) >= _CAPTURE_LIMIT


def _file_ids(scope: Scope, captured: list[bytes] | None) -> list[str]:
    ids: list[str] = []
    path_id = (scope.get("path_params") or {}).get("file_id")
    if path_id:
        ids.append(str(path_id))
    if captured:
        try:
            body: Any = json.loads(b"".join(captured))
            ids += [f["file_id"] for f in body.get("files", []) if isinstance(f, dict) and f.get("file_id")]
        except (ValueError, AttributeError, TypeError):
            pass
    return ids


class BodyLimit:
    """413 `request_too_large` for a body over its limit: `POST /upload` may carry
    MAX_FILES_PER_REQUEST files of MAX_UPLOAD_BYTES (plus 1 MiB of multipart framing), `/mcp`
    a base64 document of MCP_MAX_UPLOAD_BYTES, every other request MAX_JSON_BYTES."""

    def __init__(self, app: ASGIApp, upload_limit: int, other_limit: int, mcp_limit: int | None = None) -> None:
        self.app = app
        self.limits = {UPLOAD_ROUTE: upload_limit, MCP_ROUTE: max(mcp_limit or other_limit, other_limit)}
        self.other_limit = other_limit

    def _error(self, limit: int) -> HTTPException:
        detail = {"code": "request_too_large", "message": f"The request body is larger than {limit} bytes."}
        return HTTPException(413, detail=detail)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.other_limit)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": self._error(limit).detail}, 413)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._error(limit)  # FastAPI answers it (also from inside a body read)
            return message

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_tracking)
        except HTTPException as exc:
            if started or exc.status_code != 413:
                raise
            await JSONResponse({"detail": exc.detail}, 413)(scope, receive, send)


class LoopbackOnly:
    """With AUTH=disabled: refuse (403 `remote_access_refused`) a request that arrived on a socket
    that is not loopback, whatever API_BIND claims (a server started by hand with `--host 0.0.0.0`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not served_on_loopback(scope.get("server")):
            detail = {
                "code": "remote_access_refused",
                "message": "This API runs with AUTH=disabled and answers only on a loopback address. "
                "Enable AUTH to serve other interfaces.",
            }
            await JSONResponse({"detail": detail}, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
