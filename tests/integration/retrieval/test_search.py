"""Search straight against PostgreSQL: filtered vector search through the HNSW index (iterative
scans), the keyword leg running while the query is embedded, and the any-word fallback's common
words counted in the tenant's own chunks."""

import json
import random
import string
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import AsyncConnectionPool

from app.retrieval.filters import Filters
from app.retrieval.params import SearchParams
from app.retrieval.search import retrieve, search
from app.stores.chunks.reader import ChunkSearch
from app.stores.chunks.schema import ensure_schema
from tests.fixtures.chunks import insert_chunks, unit_vectors, with_pool
from tests.fixtures.documents import CRANE
from tests.fixtures.stack import Stack


def test_filtered_vector_search_still_returns_k_with_an_iterative_index_scan(stack: Stack) -> None:
    tenant = f"iter-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(7)
    n, k = 3000, 10
    vectors = unit_vectors(rng, n)
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
                "VALUES (%s, %s, %s, %s, %s, 'text/plain', %s, %s)",
                [
                    (tenant, uuid.uuid4(), 0, f"row {i}", f"r{i}.txt", vectors[i],
                     json.dumps({"rare": i % 100 == 0}))  # 1 row in 100 passes the filter
                    for i in range(n)
                ],
            )  # fmt: skip
        conn.commit()
    try:
        query_vec = unit_vectors(rng, 1)[0]
        flt = Filters(metadata={"rare": True})
        params = SearchParams(query="x", mode="vector", k=k, filters=flt, ef_search=20)
        hits = with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, query_vec))
        assert len(hits) == k and all(h.metadata == {"rare": True} for h in hits)
        assert [h.vector_score for h in hits] == sorted((h.vector_score for h in hits), reverse=True)

        async def without_iterative_scan(pool: AsyncConnectionPool) -> tuple[int, str]:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL hnsw.ef_search = 20")
                await conn.execute("SET LOCAL hnsw.iterative_scan = off")
                sql = ("SELECT id FROM chunks WHERE tenant = %(t)s AND metadata @> '{\"rare\": true}' "
                       "ORDER BY embedding <=> %(v)s LIMIT %(k)s")  # fmt: skip
                args = {"t": tenant, "v": query_vec, "k": k}
                plan = "\n".join(r["QUERY PLAN"] for r in await (await conn.execute("EXPLAIN " + sql, args)).fetchall())
                rows = await (await conn.execute(sql, args)).fetchall()
                return len(rows), plan

        found, plan = with_pool(stack, without_iterative_scan)
        assert "chunks_embedding_hnsw" in plan  # the index is what is scanned
        assert found < k  # ef_search candidates, then the filter: too few without iterative scans
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_a_filter_that_outlasts_the_index_scan_still_returns_the_k_nearest(stack: Stack) -> None:
    """An iterative scan stops after hnsw.max_scan_tuples rows: a filter few rows pass then came back
    short although more matched. The search counts such a result again, exactly."""
    tenant = f"scan-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(11)
    n, k = 4000, 5
    vectors = unit_vectors(rng, n)
    rare = [i for i in range(n) if i % 400 == 0]  # 10 rows pass the filter
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
                "VALUES (%s, %s, 0, %s, 'r.txt', 'text/plain', %s, %s)",
                [(tenant, uuid.uuid4(), f"row {i}", vectors[i], json.dumps({"rare": i in rare})) for i in range(n)],
            )
        conn.commit()
    try:
        query_vec = unit_vectors(rng, 1)[0]
        params = SearchParams(query="x", mode="vector", k=k, filters=Filters(metadata={"rare": True}), ef_search=20)

        async def index_only(pool: AsyncConnectionPool) -> int:  # what the index scan alone finds
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL hnsw.ef_search = 20")
                await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                sql = ("SELECT id FROM chunks WHERE tenant = %(t)s AND metadata @> '{\"rare\": true}' "
                       "ORDER BY embedding <=> %(v)s LIMIT %(k)s")  # fmt: skip
                return len(await (await conn.execute(sql, {"t": tenant, "v": query_vec, "k": k})).fetchall())

        limit = "-c hnsw.max_scan_tuples=100"  # gives up long before it has read the 1 row in 400 that passes
        assert with_pool(stack, index_only, limit) < k
        hits = with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, query_vec), limit)
        nearest = sorted(rare, key=lambda i: -float(vectors[i] @ query_vec))[:k]
        assert [h.text for h in hits] == [f"row {i}" for i in nearest]
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_hybrid_runs_the_keyword_leg_while_the_query_is_embedded(stack: Stack) -> None:
    """The keyword leg does not wait for the query's vector: with an embedder that returns only once
    a connection has been given back, a hybrid search finishes, and with the keyword leg's hit."""
    tenant = f"overlap-{uuid.uuid4().hex[:8]}"
    vector = unit_vectors(np.random.default_rng(5), 1)[0]
    ensure_schema(stack.env["DATABASE_URL"])  # idempotent; this test may run before the API made it
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
            "VALUES (%s, %s, 0, %s, 'crane.txt', 'text/plain', %s)",
            (tenant, uuid.uuid4(), CRANE, vector),
        )
        conn.commit()
    released = threading.Event()

    class ReleaseSignal:  # the pool, noting when a connection comes back
        def __init__(self, pool: AsyncConnectionPool) -> None:
            self.pool = pool

        @asynccontextmanager
        async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
            async with self.pool.connection() as conn:
                yield conn
            released.set()

    class WaitingEmbedder:
        name = "waiting"
        waited: bool | None = None

        def embed(self, texts: list[str]) -> np.ndarray:
            self.waited = released.wait(timeout=5)  # a leg that waits for the vector never sets it
            return np.stack([vector] * len(texts))

    embedder = WaitingEmbedder()
    try:
        params = SearchParams(query="crane boom", mode="hybrid", k=3)
        retrieval = with_pool(stack, lambda pool: retrieve(ChunkSearch(ReleaseSignal(pool)), embedder, tenant, params))
        assert embedder.waited is True
        assert [h.filename for h in retrieval.hits] == ["crane.txt"]
        assert (retrieval.hits[0].vector_rank, retrieval.hits[0].keyword_rank) == (1, 1)
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_the_any_word_fallback_leaves_out_common_words(stack: Stack) -> None:
    """No chunk has every word: the fallback looks for the uncommon ones only, so chunks that share
    just a common word stay out (with it, they would outrank the one with the rare word). Common is
    counted in the tenant's own chunks, at once: no statistics to wait for (no ANALYZE here)."""
    tenant = f"common-{uuid.uuid4().hex[:8]}"
    ensure_schema(stack.env["DATABASE_URL"])
    texts = ["Quayside quayside quayside: the quayside log."] * 30 + ["A walrus was seen near the pier."]
    insert_chunks(stack, tenant, texts)
    try:

        def keyword(common_word_chunks: int) -> list[str]:
            params = SearchParams("quayside walrus", "keyword", 5, common_word_chunks=common_word_chunks)
            return [h.filename for h in with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, None))]

        assert keyword(common_word_chunks=10) == ["c30.txt"]  # quayside is in 30 chunks: left out
        everything = keyword(common_word_chunks=1000)  # nothing is that common: every word counts
        assert len(everything) == 5 and "c30.txt" not in everything
        assert keyword(common_word_chunks=0) == everything  # every word is common: all are kept
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_the_fallback_counts_only_the_tenants_own_chunks(stack: Stack) -> None:
    """Which words the fallback leaves out is decided by the caller's chunks alone: another tenant's
    hundreds of chunks with the same word (and statistics fresh from ANALYZE that say so) change
    nothing in what this tenant finds. PostgreSQL's statistics cover every tenant: with them, tenant A's
    vocabulary decided tenant B's results, a side channel."""
    a, b = (f"{side}-{uuid.uuid4().hex[:8]}" for side in ("sidea", "sideb"))
    word = "".join(random.Random(uuid.uuid4().int).choices(string.ascii_lowercase, k=10))  # in no other chunk
    ensure_schema(stack.env["DATABASE_URL"])

    def b_finds() -> list[str]:
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("ANALYZE chunks")
        params = SearchParams(f"{word} walrus", "keyword", 5, common_word_chunks=10)  # no chunk has both
        return [h.filename for h in with_pool(stack, lambda pool: search(ChunkSearch(pool), b, params, None))]

    try:
        insert_chunks(stack, b, [f"The {word} log was signed.", "A walrus was seen near the pier."])
        alone = b_finds()
        assert sorted(alone) == ["c0.txt", "c1.txt"]  # one chunk each: neither word is common for B
        insert_chunks(stack, a, [f"{word} {word}: the {word} log."] * 300)
        assert b_finds() == alone
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = ANY(%s)", ([a, b],))
