"""Writing a request's interaction (app/retrieval/interaction.py) without slowing or failing it:
after the response has been sent, or, for a stream, at its end (shielded from a disconnect)."""

import anyio
from fastapi import BackgroundTasks

from app.retrieval.interaction import Interaction
from app.stores import Stores
from app.stores.interactions import new_id


def open_entry(stores: Stores, record: Interaction) -> str | None:
    """Give the interaction its id now, to answer with it (None when the log is off)."""
    if stores.interactions is not None and record.id is None:
        record.id = new_id()
    return record.id


def log_after(background: BackgroundTasks, stores: Stores, record: Interaction) -> str | None:
    """Write the interaction once the response has been sent; its id (None when the log is off)."""
    interaction_id = open_entry(stores, record)
    if stores.interactions is not None:
        background.add_task(stores.interactions.record, record.to_doc())
    return interaction_id


async def log_now(stores: Stores, record: Interaction) -> None:
    """Write it now: a stream's end, or an error answered by raising (no background tasks run then)."""
    if stores.interactions is not None:
        open_entry(stores, record)
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await stores.interactions.record(record.to_doc())
