"""The chunks schema: upgrades are additive and idempotent."""

import uuid

import psycopg

from app.stores.chunks.schema import ensure_schema, schema_sql
from tests.fixtures.stack import Stack


def test_schema_upgrade_is_additive_and_idempotent(stack: Stack) -> None:
    """A database created before `uploaded_at` existed gets the column; running again changes nothing."""
    db = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin_url = stack.env["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = admin_url.rsplit("/", 1)[0] + f"/{db}"
    try:
        old = schema_sql().split("-- additive")[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(old)
            conn.execute(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
                "VALUES ('t', gen_random_uuid(), 0, 'old row', 'old.txt', 'text/plain', "
                "array_fill(0.1, ARRAY[384])::vector)"
            )
        ensure_schema(url)
        ensure_schema(url)
        with psycopg.connect(url) as conn:
            cols = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = 'chunks'")}  # fmt: skip
            assert {"uploaded_at", "metadata"} <= cols
            assert conn.execute("SELECT text, uploaded_at FROM chunks").fetchall() == [("old row", None)]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {db} WITH (FORCE)")
