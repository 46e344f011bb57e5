"""The key store's per-tenant cap under creates from many processes at once."""

import asyncio
import contextlib
import uuid

from pymongo import AsyncMongoClient

from app.stores.audit import Actor
from app.stores.keys import KeyLimitReached, KeyStore
from tests.fixtures.stack import Stack


def test_the_key_cap_holds_for_creates_from_many_processes_at_once(stack: Stack) -> None:
    """20 creates at once, each through a MongoDB client of its own (as from 20 API processes): a count
    before the insert alone let all 20 through, each counting before the others had inserted. Counting
    again after the insert, each sees the others' keys and takes its own back out (all 20 may be
    refused); the places are free again afterwards."""
    tenant = f"kg-{uuid.uuid4().hex[:6]}"

    async def burst() -> tuple[list, int]:
        clients = [AsyncMongoClient(stack.env["MONGO_URL"], tz_aware=True) for _ in range(20)]
        try:
            await asyncio.gather(*(c.admin.command("ping") for c in clients))  # connected before the burst
            stores = [KeyStore(c, stack.env["MONGO_DB"]) for c in clients]
            creates = [s.create(tenant, f"k{i}", ["read"], cap=3, actor=Actor("test")) for i, s in enumerate(stores)]
            results = await asyncio.gather(*creates, return_exceptions=True)
            with contextlib.suppress(KeyLimitReached):
                while True:  # the places that refused creates took back are free again
                    await stores[0].create(tenant, "after the burst", ["read"], cap=3, actor=Actor("test"))
            return results, await stores[0].col.count_documents({"tenant": tenant, "revoked_at": None})
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    results, active_after = asyncio.run(burst())
    created = [r for r in results if not isinstance(r, KeyLimitReached)]
    assert all(isinstance(r, tuple) for r in created), results  # nothing but keys and refusals
    assert len(created) <= 3 and active_after == 3, (len(created), active_after)
