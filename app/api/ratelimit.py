"""Per-key rate limits, counted in Valkey with the `limits` library.

Two limits, each per API key: `UPLOAD_RATE` for `POST /upload` requests and `QUERY_RATE`
for `/query`, `/search`, `/generate` and `/generate-text-with-context` (the `limits`
notation: `60/minute`, `10/second;300/hour`). The strategy is a moving window (a sliding
log: a request counts for exactly one window after it, no burst at window edges), kept
in Valkey by `limits`' atomic Lua scripts, so every gunicorn worker and every API host
shares one count per key. Over the limit: 429 `rate_limited` with `Retry-After` (seconds
until the oldest request in the window leaves it). Every request that reaches the check
counts, whatever its answer turns out to be; one refused by the limit itself does not, so a
client that waits `Retry-After` gets through. A limit set to `off` (the default with
AUTH=disabled) is not checked.

If Valkey does not answer, the request is let through and a warning logged (fail open):
an upload would fail on the queue anyway, and searches keep working.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from app.api.errors import ApiError, http_error
from app.settings import Settings

log = logging.getLogger("app.ratelimit")

Kind = Literal["upload", "query"]


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        url = settings.valkey_url.get_secret_value()
        timeout = settings.dependency_timeout_s
        self.storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="docproc:ratelimit",
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items: dict[Kind, list[RateLimitItem]] = {
            "upload": [] if settings.upload_rate == "off" else parse_many(settings.upload_rate),
            "query": [] if settings.query_rate == "off" else parse_many(settings.query_rate),
        }

    async def check(self, kind: Kind, key_id: str) -> None:
        """Count one request of `kind` for the key; 429 when it is over any of its limits."""
        for item in self.items[kind]:
            try:
                allowed = await self.limiter.hit(item, kind, key_id)
                if allowed:
                    continue
                stats = await self.limiter.get_window_stats(item, kind, key_id)
            except Exception as exc:  # noqa: BLE001 - fail open: the limiter must not take the API down
                log.warning("rate limit not checked (%s unavailable): %s", "Valkey", type(exc).__name__)
                return
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise http_error(
                429,
                ApiError.RATE_LIMITED,
                f"Too many {kind} requests for this API key (limit {item}); retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
