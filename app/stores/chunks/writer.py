"""The worker's writer of `chunks` (sync, one connection per process) and the watchdog's sweep.

`ChunkIndex.replace` writes a file's chunks in one transaction: raise the file's fence to
the claim's token, delete the file's old chunks, COPY the new ones, each with its file's
upload metadata and time. Every write of a file's chunks first passes its fence
(`chunk_fences`, see app/fencing.py): the upsert refuses a token lower than the file's
highest, and its row lock serialises two writers of the same file until the first commits.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from app.fencing import TOMBSTONE, Claim, StaleClaim
from app.stores.chunks.schema import FENCE_SQL


@dataclass(frozen=True)
class ChunkRow:
    ordinal: int
    text: str
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    kinds: list[str]


COPY_COLUMNS = (
    "tenant, file_id, ordinal, text, page_start, page_end, heading_path, kinds, filename, content_type, embedding,"
    " metadata, uploaded_at"
)
COPY_TYPES = [
    "text", "uuid", "int4", "text", "int4", "int4", "text[]", "text[]", "text", "text", "vector", "jsonb", "timestamptz"
]  # fmt: skip


def _aware(value: datetime | None) -> datetime | None:
    """The sync MongoDB client returns naive UTC datetimes."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class ChunkIndex:
    """A worker's writer (sync). One connection per worker process."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url)
            register_vector(self._conn)
        return self._conn

    def _fence(self, cur: psycopg.Cursor, file_id: str, token: int) -> None:
        cur.execute(FENCE_SQL, {"file_id": file_id, "token": token})
        if cur.fetchone() is None:
            raise StaleClaim(f"file {file_id}: token {token} is behind the fence")

    def replace(self, claim: Claim, file: dict[str, Any], rows: Sequence[ChunkRow], vectors: np.ndarray) -> None:
        """Atomically swap the file's chunks for `rows`, if `claim` is still the file's newest.

        A rerun never duplicates; a stale claim (StaleClaim) writes nothing. The file's
        `metadata` (from the upload) and upload time are copied onto every chunk, so
        searches filter on them without a second store.
        """
        conn = self.conn
        metadata = Jsonb(file.get("metadata") or {})
        uploaded_at = _aware(file.get("created_at"))
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._fence(cur, claim.file_id, claim.token)  # also queues a second writer of this file here
                cur.execute("DELETE FROM chunks WHERE file_id = %s", (claim.file_id,))
                with cur.copy(f"COPY chunks ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(COPY_TYPES)
                    for row, vec in zip(rows, vectors, strict=True):
                        copy.write_row(
                            (
                                file["tenant"],
                                uuid.UUID(claim.file_id),
                                row.ordinal,
                                row.text,
                                row.page_start,
                                row.page_end,
                                row.heading_path,
                                row.kinds,
                                file["filename"],
                                file["content_type"],
                                vec.astype(np.float32),
                                metadata,
                                uploaded_at,
                            )
                        )
        except psycopg.OperationalError:
            self.close()
            raise

    def fence_off(self, file_id: str, token: int) -> int:
        """Raise the file's fence to `token` and remove its chunks: what a claim with `token` may do,
        and what the watchdog does for the next claim after taking a file back. StaleClaim when the
        fence is higher already; the number of chunks removed otherwise.

        Idempotent, so a connection that went bad while idle (a server restart) is replaced and the
        statement tried once more.
        """
        for attempt in (1, 2):
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    self._fence(cur, file_id, token)
                    cur.execute("DELETE FROM chunks WHERE file_id = %s", (file_id,))
                    return cur.rowcount
            except psycopg.OperationalError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def delete_file(self, file_id: str) -> int:
        """A deleted file's chunks, fenced off for good (the watchdog finishing a delete)."""
        return self.fence_off(file_id, TOMBSTONE)

    # --- the watchdog's sweep ------------------------------------------------------

    def file_ids(self) -> list[str]:
        """Every file that has chunks."""
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute("SELECT DISTINCT file_id::text FROM chunks")]

    def fenced_file_ids(self, older_than_s: float) -> list[str]:
        """Files whose fence was last raised more than `older_than_s` ago and that have no chunks."""
        sql = """SELECT f.file_id::text FROM chunk_fences f
                 WHERE f.updated_at < now() - make_interval(secs => %s)
                   AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.file_id = f.file_id)"""
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute(sql, (older_than_s,))]

    def drop_fences(self, file_ids: list[str]) -> int:
        if not file_ids:
            return 0
        with self.conn.transaction():
            return self.conn.execute("DELETE FROM chunk_fences WHERE file_id = ANY(%s::uuid[])", (file_ids,)).rowcount

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
