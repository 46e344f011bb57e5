"""Fencing: every write a worker makes carries its claim's attempt number, and the store refuses a stale one.

A lease (app/lease.py) tells the watchdog when a worker is presumed dead; it cannot stop a
worker that was only paused (SIGSTOP, a long GC, a network partition) from waking up after
the file was handed to another worker. So each claim of a file (`queued -> processing`)
increments the file's `attempts`, and that number is the claim's **fencing token**:

- MongoDB: every status write of a worker (progress, heartbeat, `embedded`, `failed`, hand
  back) filters on `attempts == token` as well as on the state, so a stale worker's write
  matches nothing;
- PostgreSQL: `chunk_fences` keeps, per file, the highest token that has written (or been
  fenced off by the watchdog or a delete); replacing or removing a file's chunks first raises
  the fence to the writer's token in the same transaction and is refused when the fence is
  already higher. The row lock of that upsert also serialises two writers of one file.

Who raises a fence without writing: the watchdog, after it takes a file back from a worker
whose lease expired (to the next claim's token), and a delete (to `TOMBSTONE`).
"""

from dataclasses import dataclass
from typing import Any

from app.status import FileStatus

TOMBSTONE = 2**31 - 1  # a deleted file's fence: no claim's token is ever this high


class StaleClaim(Exception):
    """A write carried a token lower than the file's fence: another claim owns the file now."""


@dataclass(frozen=True)
class Claim:
    """A worker's claim of a file: the fencing token every one of its writes carries."""

    file_id: str
    token: int  # the file's `attempts` after this claim
    owner: str  # who holds the processing lease (app/lease.py)

    def current(self) -> dict[str, Any]:
        """Filter: the file is still processing under this claim."""
        return {"_id": self.file_id, "status": FileStatus.PROCESSING.value, "attempts": self.token}
