"""The interaction log in MongoDB (`interactions`): every query and answer, for evaluation.

One document per request to /query, /search, /generate or /generate-text-with-context:
the query, mode, filters, the chunks retrieved with their scores, the answer, which
generator and model wrote it, any error, and the latency of each stage. Writing it
never fails or slows the request: it runs after the response is sent, and a failure
is logged and dropped. Off with `INTERACTIONS_LOG=false`.
"""

import logging
import uuid
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from app.status import now

log = logging.getLogger("app.interactions")

INDEXES = [
    [("tenant", ASCENDING), ("created_at", DESCENDING)],
    [("tenant", ASCENDING), ("endpoint", ASCENDING), ("created_at", DESCENDING)],
]


def new_id() -> str:
    return str(uuid.uuid4())


class InteractionStore:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.col = client[db_name]["interactions"]

    async def ensure_indexes(self) -> None:
        for keys in INDEXES:
            await self.col.create_index(keys)

    async def record(self, doc: dict[str, Any]) -> None:
        """Insert one interaction (`_id`, `tenant`, `endpoint`, ... ); errors are logged, not raised."""
        try:
            await self.col.insert_one({"created_at": now(), **doc})
        except Exception:  # the log must never break a search or an answer
            log.warning("interaction %s not logged", doc.get("_id"), exc_info=True)

    async def get(self, tenant: str, interaction_id: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": interaction_id, "tenant": tenant})
