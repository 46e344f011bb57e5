"""Leases: an owner plus an expiry the owner keeps renewing. Only an expired lease may be taken over.

Anything in flight holds one, stored in its MongoDB document as `lease: {owner, expires_at}`:
- an upload being received (`files`, status `saving`): the receiving request renews it while
  bytes arrive; the watchdog removes a `saving` file only once its lease has expired;
- a job being worked (`files`, status `processing`): the worker's heartbeat renews it; the
  watchdog takes the file back (requeue, or `failed` worker_lost) only once it has expired;
- an idempotent request in flight (`idempotency`, state `running`): a retry may take the key
  over only once the first request's lease has expired.

A takeover is a compare-and-set on the expired lease, so an owner that renews in time
always wins. An owner that was paused past its expiry (SIGSTOP, a long GC, a partition) can
wake up and still write: leases alone cannot stop that, fencing does (app/fencing.py).
"""

import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from app.status import now

FIELD = "lease"


def owner_id(*parts: str) -> str:
    """Who holds a lease: this host and process, plus what the process is doing (a request id, a worker)."""
    return ":".join([socket.gethostname(), str(os.getpid()), *parts])


def new(owner: str, ttl_s: float) -> dict[str, Any]:
    """A lease held by `owner` for `ttl_s` seconds from now."""
    return {"owner": owner, "expires_at": now() + timedelta(seconds=ttl_s)}


def renewal(ttl_s: float) -> dict[str, datetime]:
    """The `$set` fields that extend a lease by `ttl_s` seconds from now."""
    return {f"{FIELD}.expires_at": now() + timedelta(seconds=ttl_s)}


def held_by(owner: str) -> dict[str, str]:
    """Filter: the lease is `owner`'s."""
    return {f"{FIELD}.owner": owner}


def expired(at: datetime | None = None) -> dict[str, Any]:
    """Filter: the lease has expired (at `at`, default now), so it may be taken over."""
    return {f"{FIELD}.expires_at": {"$lt": at or now()}}


class Renewer:
    """Renews a lease from inside a stream of work (an upload's body): at most every `interval_s`.

    `tick()` is cheap to call for every piece of work; it awaits `renew` only when the interval
    has passed. `renew` returns False when the lease was lost (taken over): the owner must stop.
    """

    def __init__(self, renew: Callable[[], Awaitable[bool]], interval_s: float) -> None:
        self.renew = renew
        self.interval_s = interval_s
        self.last = time.monotonic()

    async def tick(self) -> bool:
        if time.monotonic() - self.last < self.interval_s:
            return True
        self.last = time.monotonic()
        return await self.renew()
