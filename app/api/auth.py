"""API keys: their format, hashing, and the FastAPI dependencies every router uses.

A key is `dp_<id>_<secret>`: `id` is 12 hex digits (the document's `_id` in MongoDB
`api_keys`, for lookup), `secret` 43 URL-safe characters (256 random bits). Only
SHA-256(`id:secret`) is stored; a presented key is looked up by its id and its hash
compared with `hmac.compare_digest`. The key itself is shown once, when created.

Clients send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Each key belongs
to one tenant and has scopes: `read` (files, search, answers, stats), `write` (upload,
delete) and `admin` (the tenant's keys, host metrics). With `AUTH=disabled` (allowed
only when the API binds to loopback, see `check_bind`) every caller is
`DEFAULT_TENANT` with every scope.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.errors import ApiError, http_error
from app.settings import Settings
from app.status import now
from app.stores.keys import KeyStore, hash_secret

log = logging.getLogger("app.auth")

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_KEY = re.compile(r"^dp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
LOCAL_KEY_ID = "local"  # the principal's key id when AUTH=disabled

UNAUTHORIZED = "A valid API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`."


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    m = _KEY.match(key.strip())
    return (m.group(1), m.group(2)) if m else None


def verify(doc: dict, secret: str) -> bool:
    return hmac.compare_digest(str(doc.get("hash", "")), hash_secret(str(doc["_id"]), secret))


def parse_scopes(text: str) -> list[Scope]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are a comma-separated subset of {', '.join(SCOPES)}; got {text!r}")
    return [s for s in SCOPES if s in scopes]  # type: ignore[misc]


def bind_host(api_bind: str) -> str:
    """The host part of gunicorn's `--bind` (`host:port`, `[::1]:port`, `unix:/path`)."""
    if api_bind.startswith("unix:"):
        return "unix"
    host, _, port = api_bind.rpartition(":")
    if not port.isdigit():
        host = api_bind
    return host.strip("[]")


def is_loopback(api_bind: str) -> bool:
    host = bind_host(api_bind)
    if host == "unix":
        return True  # a local socket: only this machine reaches it
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_on_loopback(server: tuple[str, int | None] | None) -> bool:
    """Did a request arrive on a loopback socket (or a unix one)? `server` is the ASGI scope's:
    the address of the socket the server accepted it on, whatever API_BIND says."""
    if server is None:
        return False
    host, port = server
    return port is None or is_loopback_host(host)


def check_bind(settings: Settings) -> None:
    """Refuse to start with AUTH=disabled unless API_BIND is loopback. API_BIND is what the
    launcher says; every request is checked against the socket it really arrived on too
    (app/api/middleware.py LoopbackOnly)."""
    if settings.auth == "disabled" and not is_loopback(settings.api_bind):
        raise RuntimeError(
            f"AUTH=disabled is only allowed when the API binds to loopback (127.0.0.1, ::1); API_BIND is "
            f"{settings.api_bind!r}. Enable AUTH, or bind to 127.0.0.1."
        )


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant every query is scoped to, the key and its scopes."""

    tenant: str
    key_id: str
    scopes: frozenset[str]
    name: str = ""

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer dp_<id>_<secret>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: dp_<id>_<secret>`")


def _is_metrics_token(settings: Settings, bearer: HTTPAuthorizationCredentials | None) -> bool:
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    return bool(token) and bearer is not None and hmac.compare_digest(bearer.credentials.encode(), token.encode())


def _unauthorized(message: str = UNAUTHORIZED) -> Exception:
    return http_error(401, ApiError.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`; None without one."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key") or None


async def principal_for(settings: Settings, keys: KeyStore, presented: str | None) -> Principal | None:
    """Who presents this key: None when it is missing, malformed, unknown, revoked or wrong (all alike).
    Every caller is DEFAULT_TENANT with every scope when AUTH=disabled. The one check of a key, for
    the HTTP routes, the MCP transport and the Dify endpoint."""
    if settings.auth == "disabled":
        return Principal(settings.default_tenant, LOCAL_KEY_ID, frozenset(SCOPES), "auth disabled")
    parsed = parse_key(presented) if presented else None
    if parsed is None:
        return None
    key_id, secret = parsed
    doc = await keys.get(key_id)
    if doc is None or doc.get("revoked_at") is not None or not verify(doc, secret):
        return None  # unknown, revoked or wrong secret: the same answer
    last = doc.get("last_used_at")
    stamp = now()
    if last is None or stamp - last >= timedelta(seconds=settings.key_touch_interval_s):
        await keys.touch(key_id, stamp)
    return Principal(doc["tenant"], key_id, frozenset(doc.get("scopes", ())), doc.get("name", ""))


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, from its key (401 `unauthorized` when missing, malformed, unknown or revoked)."""
    presented = bearer.credentials if bearer is not None else api_key
    principal = await principal_for(request.app.state.settings, request.app.state.stores.keys, presented)
    if principal is None:
        raise _unauthorized()
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require(scope: Scope, limit: Literal["upload", "query"] | None = None):  # noqa: ANN201 - a dependency
    """A dependency: the caller must have `scope` (403 `forbidden`), and within its rate `limit` (429)."""

    async def dependency(request: Request, principal: PrincipalDep) -> Principal:
        if not principal.has(scope):
            raise http_error(403, ApiError.FORBIDDEN, f"This API key lacks the {scope!r} scope.")
        if limit is not None:
            await request.app.state.limiter.check(limit, principal.key_id)
        return principal

    dependency.__name__ = f"require_{scope}" + (f"_{limit}" if limit else "")
    return dependency


async def metrics_access(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """GET /metrics: `Authorization: Bearer $METRICS_TOKEN` (Prometheus), open only when AUTH=disabled."""
    settings: Settings = request.app.state.settings
    if settings.auth == "disabled":
        return
    if not (settings.metrics_token and settings.metrics_token.get_secret_value()):
        raise _unauthorized("GET /metrics needs METRICS_TOKEN to be set, and sent as `Authorization: Bearer`.")
    if not _is_metrics_token(settings, bearer):
        raise _unauthorized("GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.")


async def operator_access(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> None:
    """Host metrics: the METRICS_TOKEN, or an API key with the `admin` scope."""
    settings: Settings = request.app.state.settings
    if _is_metrics_token(settings, bearer):
        return
    principal = await authenticate(request, bearer, api_key)
    if not principal.has("admin"):
        raise http_error(403, ApiError.FORBIDDEN, "This API key lacks the 'admin' scope.")


async def is_operator(request: Request) -> bool:
    """Whether the caller may see operational detail (`/ready`'s checks): the METRICS_TOKEN, an
    `admin` key, or anyone when AUTH=disabled. Never raises: a stranger just sees less."""
    settings: Settings = request.app.state.settings
    if settings.auth == "disabled":
        return True
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    bearer = None
    if scheme.lower() == "bearer":
        bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials.strip())
    if _is_metrics_token(settings, bearer):
        return True
    try:
        principal = await authenticate(request, bearer, request.headers.get("x-api-key"))
    except Exception:  # noqa: BLE001 - a wrong key, or MongoDB away: the short answer (the token needs no MongoDB)
        return False
    return principal.has("admin")
