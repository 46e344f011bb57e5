"""The chunks tables in PostgreSQL + pgvector: `chunks` (text, vector, full text, the file's upload
metadata) and `chunk_fences` (each file's highest fencing token, app/fencing.py), created or
upgraded additively by `ensure_schema`; and the fence statement every writer of a file's chunks
runs first."""

import psycopg

TS_CONFIG = "english"  # the language of the `tsv` column: the search statements use the same
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
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', text)) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_tenant_file ON chunks (tenant, file_id);
CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 24, ef_construction = 128);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv);
-- the highest fencing token that wrote each file's chunks, or fenced them off (app/fencing.py)
CREATE TABLE IF NOT EXISTS chunk_fences (
    file_id    uuid        PRIMARY KEY,
    token      integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- additive changes for databases created before them; checked first, so that a
-- startup takes no exclusive lock on the table once they are in
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'chunks'::regclass AND attname = 'uploaded_at' AND NOT attisdropped) THEN
        ALTER TABLE chunks ADD COLUMN IF NOT EXISTS uploaded_at timestamptz;  -- search filters (upload date)
    END IF;
END $$;
"""


# raise the file's fence to %(token)s; no row back: the fence is already higher (a stale claim)
FENCE_SQL = """
INSERT INTO chunk_fences (file_id, token) VALUES (%(file_id)s, %(token)s)
ON CONFLICT (file_id) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
    WHERE chunk_fences.token <= EXCLUDED.token
RETURNING token
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
