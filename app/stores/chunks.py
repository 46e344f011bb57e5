"""Chunks, their vectors and full text in PostgreSQL + pgvector.

The worker writes a file's chunks with `ChunkIndex.replace` (one transaction:
delete the file's old chunks, COPY the new ones, each with its file's upload
metadata and time); the API searches (app/retrieval/search.py) and deletes with
`ChunkSearch`.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

EMBEDDING_DIM = 384


def schema_sql(dim: int = EMBEDDING_DIM) -> str:
    return f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS chunks (
    id           bigserial PRIMARY KEY,
    tenant       text        NOT NULL,
    file_id      uuid        NOT NULL,
    ordinal      integer     NOT NULL,
    text         text        NOT NULL,
    page_start   integer,
    page_end     integer,
    heading_path text[]      NOT NULL DEFAULT '{{}}',
    kinds        text[]      NOT NULL DEFAULT '{{}}',
    filename     text        NOT NULL,
    content_type text        NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{{}}',
    embedding    vector({dim}) NOT NULL,
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_tenant_file ON chunks (tenant, file_id);
CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 24, ef_construction = 128);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv);
-- additive changes for databases created before them; checked first, so that a
-- startup takes no exclusive lock on the table once they are in
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'chunks'::regclass AND attname = 'uploaded_at' AND NOT attisdropped) THEN
        ALTER TABLE chunks ADD COLUMN IF NOT EXISTS uploaded_at timestamptz;  -- search filters (upload date)
    END IF;
END $$;
"""


def ensure_schema(database_url: str) -> None:
    """Create the extension, table and indexes if missing (safe to run concurrently)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # CREATE ... IF NOT EXISTS still races on the catalog; serialize the callers.
        conn.execute("SELECT pg_advisory_lock(72707001)")
        try:
            conn.execute(schema_sql())
        finally:
            conn.execute("SELECT pg_advisory_unlock(72707001)")


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

    def replace(self, file: dict[str, Any], rows: Sequence[ChunkRow], vectors: np.ndarray) -> None:
        """Atomically swap the file's chunks for `rows`: a rerun never duplicates.

        The file's `metadata` (from the upload) and upload time are copied onto every
        chunk, so searches filter on them without a second store.
        """
        conn = self.conn
        metadata = Jsonb(file.get("metadata") or {})
        uploaded_at = _aware(file.get("created_at"))
        try:
            with conn.transaction(), conn.cursor() as cur:
                # Two jobs for the same file queue up here instead of interleaving.
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (file["_id"],))
                cur.execute("DELETE FROM chunks WHERE file_id = %s", (file["_id"],))
                with cur.copy(f"COPY chunks ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(COPY_TYPES)
                    for row, vec in zip(rows, vectors, strict=True):
                        copy.write_row(
                            (
                                file["tenant"],
                                uuid.UUID(file["_id"]),
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

    def delete_file(self, file_id: str) -> int:
        with self.conn.transaction():
            return self.conn.execute("DELETE FROM chunks WHERE file_id = %s", (file_id,)).rowcount

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await register_vector_async(conn)


def make_pool(database_url: str, timeout_s: float, max_size: int = 10) -> AsyncConnectionPool:
    """A pool whose callers give up after `timeout_s` when PostgreSQL is away (the API answers 503)."""
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        configure=_configure,
        open=False,
        timeout=timeout_s,
        check=AsyncConnectionPool.check_connection,  # a server restart must not surface as errors
        kwargs={"row_factory": dict_row, "connect_timeout": max(1, round(timeout_s))},
    )


class ChunkSearch:
    """The API's reader (async), over a connection pool. The search SQL (vector, keyword,
    hybrid, filters) is app/retrieval/search.py, run over `pool`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def delete_file(self, tenant: str, file_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM chunks WHERE tenant = %s AND file_id = %s", (tenant, file_id))
            return cur.rowcount
