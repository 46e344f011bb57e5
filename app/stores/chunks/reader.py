"""The API's reader of `chunks` (async, over a connection pool): the search statements, a file's
chunks in order (MCP `get_chunks` and document resources) and the delete of a file's chunks.
Retrieval (app/retrieval/search.py) runs the legs, fuses and highlights.

- vector: cosine distance over the HNSW index. Iterative index scans
  (`hnsw.iterative_scan = relaxed_order`) keep the scan going until `n` rows pass
  the tenant and the filters, up to `hnsw.max_scan_tuples`; a result still short of
  `n` is searched again exactly over the rows that pass, so a filter never silently
  drops results. Rows come back nearly in order and are sorted again here.
- keyword: PostgreSQL full text over the `tsv` column (GIN index) with
  `websearch_to_tsquery`, ranked by `ts_rank`. A query without search operators
  matches the chunks that have all its words (stemmed, stop words dropped) or, only
  when no chunk has all of them, those with any of its uncommon words: a word in more
  than `common_word_chunks` of the tenant's own chunks is left out of that fallback
  unless all are that common (matching and ranking the two thirds of 100k chunks that
  say "return" took 100 ms and ranked nothing useful). The count is the caller's, per
  word and capped at `common_word_chunks + 1`, never PostgreSQL's statistics, which
  cover every tenant: with them one tenant's vocabulary decided what another found. A
  query with operators (`"a phrase"`, `-word`, `or`) is taken as written.
- headlines: `ts_headline` of the chunks found, with separators that do not occur in
  text (`MARK_START`, `MARK_STOP`, `FRAGMENT_SEP`).

Each leg runs on its own pooled connection, in its own transaction, so the two can run at
once. Every statement is scoped by `tenant = %(tenant)s`; every value is a parameter.
"""

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.fencing import TOMBSTONE
from app.stores.chunks.schema import FENCE_SQL, TS_CONFIG
from app.stores.chunks.where import ChunkFilter, to_sql

Row = dict[str, Any]  # a chunk as the search statements select it: COLUMNS, and `distance` or `rank_score`

COLUMNS = (
    "id, file_id::text AS file_id, filename, content_type, ordinal, text, page_start, page_end, heading_path, metadata"
)
# ts_headline with separators that do not occur in text, turned into escaped HTML by retrieval
MARK_START, MARK_STOP, FRAGMENT_SEP = "\x02", "\x03", "\x1e"
HEADLINE_OPTIONS = (
    f"StartSel={MARK_START}, StopSel={MARK_STOP}, FragmentDelimiter={FRAGMENT_SEP}, MaxFragments=3, MaxWords=30, "
    "MinWords=8"
)


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


_OPERATORS = re.compile(r'"|(^|\s)-\S|(^|\s)or(\s|$)', re.IGNORECASE)


def keyword_queries(query: str) -> tuple[str, str]:
    """(strict, loose) `websearch_to_tsquery` inputs: all words, and any word."""
    if _OPERATORS.search(query):
        return query, query  # the caller wrote a search-engine query: take it as written
    words = query.split()
    return query, " or ".join(words)


_VECTOR_SQL = """
SELECT {columns}, embedding <=> %(v)s AS distance
FROM chunks WHERE tenant = %(tenant)s{where}
ORDER BY embedding <=> %(v)s LIMIT %(n)s
"""
# the rows that pass, then the nearest of them: a materialised set cannot be read through the HNSW index
_EXACT_VECTOR_SQL = """
WITH passing AS MATERIALIZED (
    SELECT {columns}, embedding <=> %(v)s AS distance FROM chunks WHERE tenant = %(tenant)s{where}
)
SELECT * FROM passing ORDER BY distance LIMIT %(n)s
"""


# a lexeme as `tsquery` text in SQL, quoted as `tsquery_literal` does (E'' strings: one backslash is
# one backslash whatever standard_conforming_strings says)
LEXEME_TSQUERY = r"""('''' || replace(replace(w.lexeme, E'\\', E'\\\\'), '''', '''''') || '''')::tsquery"""

# the query's words (lexemes), each with the number of the tenant's chunks that have it, counted up
# to %(cap)s: per word, the GIN index's matches, and rows read until the cap (past it, all are common)
_WORD_CHUNKS_SQL = f"""
SELECT w.lexeme, n.chunks
FROM unnest(to_tsvector('{TS_CONFIG}', %(q)s)) AS w,
LATERAL (
    SELECT count(*) AS chunks FROM (
        SELECT 1 FROM chunks WHERE tenant = %(tenant)s AND tsv @@ {LEXEME_TSQUERY} LIMIT %(cap)s
    ) AS matched
) AS n
"""


async def word_chunks(conn: AsyncConnection, tenant: str, query: str, cap: int) -> list[tuple[str, int]]:
    """The query's lexemes, each with how many of the tenant's chunks have it (at most `cap`)."""
    # planned for this tenant every time (never a prepared, generic plan): for a small tenant the
    # planner ANDs the tenant's index with the word's, rather than visit every tenant's rows that
    # have the word (5 words, a tenant of 50 chunks among 20k: 16 -> 3.4 ms at p50)
    cur = await conn.execute(_WORD_CHUNKS_SQL, {"q": query, "tenant": tenant, "cap": cap}, prepare=False)
    return [(row["lexeme"], row["chunks"]) for row in await cur.fetchall()]


def any_word_tsquery(counts: Sequence[tuple[str, int]], common_word_chunks: int) -> str | None:
    """The any-word fallback as `tsquery` text: the words in at most `common_word_chunks` chunks,
    or all of them when every one is in more; None for a query without words."""
    kept = [w for w, chunks in counts if chunks <= common_word_chunks] or [w for w, _ in counts]
    return " | ".join(tsquery_literal(w) for w in kept) or None


def tsquery_literal(lexeme: str) -> str:
    """A lexeme quoted for `tsquery` input: taken as is, no parsing, no stemming."""
    escaped = lexeme.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


async def _vector_rows(
    conn: AsyncConnection, tenant: str, vector: np.ndarray, n: int, where: str, params: dict[str, Any]
) -> list[Row]:
    values = {**params, "v": vector.astype(np.float32), "tenant": tenant, "n": n}
    rows = await (await conn.execute(_VECTOR_SQL.format(columns=COLUMNS, where=where), values)).fetchall()
    if len(rows) < n:
        # An iterative index scan gives up after hnsw.max_scan_tuples rows read, so a filter (or the
        # tenant) that few rows pass can come back short although more match: count it exactly then,
        # over the rows that pass.
        rows = await (await conn.execute(_EXACT_VECTOR_SQL.format(columns=COLUMNS, where=where), values)).fetchall()
    # relaxed_order: iterative scans may return rows slightly out of order
    return sorted(rows, key=lambda r: (r["distance"], r["id"]))


async def _keyword_rows(
    conn: AsyncConnection,
    tenant: str,
    query: str,
    n: int,
    common_word_chunks: int,
    where: str,
    filter_params: dict[str, Any],
) -> list[Row]:
    """Chunks with all the words; only when there are none, chunks with any of the uncommon ones."""
    # PostgreSQL prices `@@` like `=`, so past ~20% of the table matching, it scans every row and
    # matches each tsvector; the GIN index hands over the matches with no recheck: 86 -> 18 ms for
    # 23,000 matches in 100k chunks (BENCHMARKS.md). Which index (GIN, or the file btree under a
    # file filter) stays the planner's choice.
    await conn.execute("SET LOCAL enable_seqscan = off")

    async def ranked(tsquery_sql: str, text: str) -> list[Row]:
        cur = await conn.execute(
            f"""
            SELECT {COLUMNS}, ts_rank(tsv, {tsquery_sql}, 1) AS rank_score
            FROM chunks
            WHERE tenant = %(tenant)s AND tsv @@ {tsquery_sql}{where}
            ORDER BY rank_score DESC, id LIMIT %(n)s
            """,
            {**filter_params, "q": text, "tenant": tenant, "n": n},
        )
        return await cur.fetchall()

    strict, loose = keyword_queries(query)
    rows = await ranked(f"websearch_to_tsquery('{TS_CONFIG}', %(q)s)", strict)
    if rows or loose == strict:  # found; or taken as written (operators); or a single word
        return rows
    counts = await word_chunks(conn, tenant, query, common_word_chunks + 1)
    any_word = any_word_tsquery(counts, common_word_chunks)
    return await ranked("%(q)s::tsquery", any_word) if any_word else []


_HEADLINE_SQL = f"""
SELECT id, ts_headline('{TS_CONFIG}', text, websearch_to_tsquery('{TS_CONFIG}', %(loose)s), %(opts)s) AS h
FROM chunks WHERE tenant = %(tenant)s AND id = ANY(%(ids)s)
"""


class ChunkSearch:
    """The API's reader (async), over a connection pool: each method takes a connection of its own."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def nearest(
        self, tenant: str, vector: np.ndarray, n: int, filters: ChunkFilter | None, ef_search: int
    ) -> list[Row]:
        """The `n` chunks nearest to `vector` that pass `filters`, nearest first (`distance`: cosine)."""
        where, filter_params = to_sql(filters)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            # keep scanning the index until n rows pass the tenant and the filters
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return await _vector_rows(conn, tenant, vector, n, where, filter_params)

    async def matching(
        self, tenant: str, query: str, n: int, filters: ChunkFilter | None, common_word_chunks: int
    ) -> list[Row]:
        """The `n` chunks that best match `query`'s words and pass `filters`, best first (`rank_score`)."""
        where, filter_params = to_sql(filters)
        async with self.pool.connection() as conn, conn.transaction():
            return await _keyword_rows(conn, tenant, query, n, common_word_chunks, where, filter_params)

    async def headlines(self, tenant: str, query: str, chunk_ids: list[int]) -> dict[int, str]:
        """Each chunk's `ts_headline` for any of `query`'s words (fragments split by FRAGMENT_SEP)."""
        _, loose = keyword_queries(query)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _HEADLINE_SQL, {"loose": loose, "opts": HEADLINE_OPTIONS, "tenant": tenant, "ids": chunk_ids}
            )
            return {r["id"]: r["h"] for r in await cur.fetchall()}

    async def file_chunks(self, tenant: str, file_id: str, limit: int, offset: int) -> tuple[list[Row], int]:
        """A page of the file's chunks in document order (COLUMNS), and how many it has."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM chunks WHERE tenant = %s AND file_id = %s ORDER BY ordinal LIMIT %s OFFSET %s",
                (tenant, file_id, limit, offset),
            )
            rows = await cur.fetchall()
            cur = await conn.execute(
                "SELECT count(*) AS n FROM chunks WHERE tenant = %s AND file_id = %s", (tenant, file_id)
            )
            total = (await cur.fetchone() or {"n": 0})["n"]
        return rows, total

    async def delete_file(self, tenant: str, file_id: str) -> int:
        """Remove the file's chunks and fence it off for good: a worker still on it can write nothing."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(FENCE_SQL, {"file_id": file_id, "token": TOMBSTONE})
            cur = await conn.execute("DELETE FROM chunks WHERE tenant = %s AND file_id = %s", (tenant, file_id))
            return cur.rowcount
