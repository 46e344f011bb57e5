"""The chunks reader's statements in PostgreSQL: per-tenant word counts, and tsquery literals read back."""

import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.stores.chunks.reader import LEXEME_TSQUERY, any_word_tsquery, tsquery_literal, word_chunks
from app.stores.chunks.schema import ensure_schema
from tests.fixtures.chunks import insert_chunks, with_pool
from tests.fixtures.stack import Stack


def test_word_chunks_counts_the_tenants_chunks_up_to_the_cap(stack: Stack) -> None:
    tenant, other = (f"count-{uuid.uuid4().hex[:8]}" for _ in range(2))
    ensure_schema(stack.env["DATABASE_URL"])
    insert_chunks(stack, tenant, ["Quayside cranes."] * 12 + ["A walrus."])
    insert_chunks(stack, other, ["Walrus, walrus."] * 20)

    async def counts(pool: AsyncConnectionPool) -> dict[str, int]:
        async with pool.connection() as conn:
            return dict(await word_chunks(conn, tenant, "the quayside walrus's zebra", cap=5))

    try:  # stop words are not lexemes; the other tenant's walruses are not counted
        assert with_pool(stack, counts) == {"quaysid": 5, "walrus": 1, "zebra": 0}
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = ANY(%s)", ([tenant, other],))


def test_any_word_tsquery_and_its_literals(stack: Stack) -> None:
    assert any_word_tsquery([("return", 60_000), ("walrus", 0), ("pier", 12)], 5000) == "'walrus' | 'pier'"
    assert any_word_tsquery([("return", 60_000), ("valu", 30_000)], 5000) == "'return' | 'valu'"  # all common
    assert any_word_tsquery([], 5000) is None
    odd = ["it's", "c:\\temp", "a|b", "x'\\'y"]
    # the count statement quotes the lexemes it reads from the query the same way, in SQL
    in_sql = f"SELECT ({LEXEME_TSQUERY})::text FROM (SELECT %s::text AS lexeme) AS w"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:  # PostgreSQL reads each back as that one lexeme
        for lexeme in odd:
            expected = "'" + lexeme.replace("'", "''").replace("\\", "\\\\") + "'"
            assert conn.execute("SELECT querytree(%s::tsquery)", (tsquery_literal(lexeme),)).fetchone()[0] == expected
            assert conn.execute(in_sql, (lexeme,)).fetchone()[0] == expected
