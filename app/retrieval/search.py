"""Vector, keyword and hybrid search over `chunks`, with filters.

- vector: cosine distance over the HNSW index. Iterative index scans
  (`hnsw.iterative_scan = relaxed_order`) keep the scan going until `k` rows pass
  the tenant and the filters, up to `hnsw.max_scan_tuples`; a result still short of
  `k` is searched again exactly over the rows that pass, so a filter never silently
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
- hybrid: reciprocal rank fusion of both lists, `sum(weight / (RRF_K + rank))`,
  each list `max(k, HYBRID_CANDIDATES)` long. The two legs run at once, each on its own
  connection, the keyword leg while the query is being embedded: the latency is the
  slower leg's, not their sum.

Every statement is scoped by `tenant = %(tenant)s`; every value is a parameter.
"""

import html
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import numpy as np
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.embedding.embedder import Embedder
from app.retrieval.filters import Filters, to_sql

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("vector", "keyword", "hybrid")
TS_CONFIG = "english"  # the language of the `tsv` column (app/stores/chunks.py)

COLUMNS = (
    "id, file_id::text AS file_id, filename, content_type, ordinal, text, page_start, page_end, heading_path, metadata"
)
# ts_headline with separators that do not occur in text, turned into escaped HTML below
_START, _STOP, _SEP = "\x02", "\x03", "\x1e"
HEADLINE_OPTIONS = (
    f"StartSel={_START}, StopSel={_STOP}, FragmentDelimiter={_SEP}, MaxFragments=3, MaxWords=30, MinWords=8"
)


@dataclass(frozen=True)
class SearchParams:
    query: str
    mode: Mode = "hybrid"
    k: int = 5
    filters: Filters | None = None
    highlight: bool = False
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: int = 60
    candidates: int = 50
    ef_search: int = 200
    common_word_chunks: int = 5000


@dataclass
class Hit:
    chunk_id: int
    file_id: str
    filename: str
    content_type: str
    chunk_index: int
    text: str
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    metadata: dict[str, Any]
    score: float = 0.0
    vector_score: float | None = None  # cosine similarity
    keyword_score: float | None = None  # ts_rank
    vector_rank: int | None = None  # 1-based place in its list
    keyword_rank: int | None = None
    highlights: list[str] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Hit":
        return cls(
            chunk_id=row["id"],
            file_id=row["file_id"],
            filename=row["filename"],
            content_type=row["content_type"],
            chunk_index=row["ordinal"],
            text=row["text"],
            page_start=row["page_start"],
            page_end=row["page_end"],
            heading_path=list(row["heading_path"] or []),
            metadata=dict(row["metadata"] or {}),
        )


@dataclass
class Retrieval:
    hits: list[Hit]
    latency_ms: dict[str, float] = field(default_factory=dict)


_OPERATORS = re.compile(r'"|(^|\s)-\S|(^|\s)or(\s|$)', re.IGNORECASE)


def keyword_queries(query: str) -> tuple[str, str]:
    """(strict, loose) `websearch_to_tsquery` inputs: all words, and any word."""
    if _OPERATORS.search(query):
        return query, query  # the caller wrote a search-engine query: take it as written
    words = query.split()
    return query, " or ".join(words)


def rrf(ranked: Sequence[tuple[Sequence[int], float]], rrf_k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists, each with a weight: [(id, score)], best first.

    Ties go to the id with the better best rank, then the smaller id (a stable order).
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ids, weight in ranked:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (rrf_k + rank)
            best[chunk_id] = min(best.get(chunk_id, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))


async def _vector_leg(
    conn: AsyncConnection, tenant: str, vector: np.ndarray, n: int, where: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    values = {**params, "v": vector.astype(np.float32), "tenant": tenant, "n": n}
    rows = await (await conn.execute(_VECTOR_SQL.format(columns=COLUMNS, where=where), values)).fetchall()
    if len(rows) < n:
        # An iterative index scan gives up after hnsw.max_scan_tuples rows read, so a filter (or the
        # tenant) that few rows pass can come back short although more match: count it exactly then,
        # over the rows that pass.
        rows = await (await conn.execute(_EXACT_VECTOR_SQL.format(columns=COLUMNS, where=where), values)).fetchall()
    # relaxed_order: iterative scans may return rows slightly out of order
    return sorted(rows, key=lambda r: (r["distance"], r["id"]))


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


async def _keyword_leg(
    conn: AsyncConnection, tenant: str, params: SearchParams, n: int, where: str, filter_params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Chunks with all the words; only when there are none, chunks with any of the uncommon ones."""
    # PostgreSQL prices `@@` like `=`, so past ~20% of the table matching, it scans every row and
    # matches each tsvector; the GIN index hands over the matches with no recheck: 86 -> 18 ms for
    # 23,000 matches in 100k chunks (BENCHMARKS.md). Which index (GIN, or the file btree under a
    # file filter) stays the planner's choice.
    await conn.execute("SET LOCAL enable_seqscan = off")

    async def ranked(tsquery_sql: str, text: str) -> list[dict[str, Any]]:
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

    strict, loose = keyword_queries(params.query)
    rows = await ranked(f"websearch_to_tsquery('{TS_CONFIG}', %(q)s)", strict)
    if rows or loose == strict:  # found; or taken as written (operators); or a single word
        return rows
    counts = await word_chunks(conn, tenant, params.query, params.common_word_chunks + 1)
    any_word = any_word_tsquery(counts, params.common_word_chunks)
    return await ranked("%(q)s::tsquery", any_word) if any_word else []


def headline_fragments(headline: str) -> list[str]:
    """ts_headline output -> HTML-escaped fragments with matches in <mark>, only those with a match."""
    out = []
    for fragment in headline.split(_SEP):
        if _START not in fragment:
            continue
        escaped = html.escape(fragment.strip(), quote=False)
        marked = escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")
        out.append(marked.replace("</mark><mark>", ""))  # one mark over a code's parts (XK-4471)
    return out


async def _highlight(conn: AsyncConnection, tenant: str, query: str, hits: list[Hit]) -> None:
    _, loose = keyword_queries(query)
    cur = await conn.execute(
        f"""
        SELECT id, ts_headline('{TS_CONFIG}', text, websearch_to_tsquery('{TS_CONFIG}', %(loose)s), %(opts)s) AS h
        FROM chunks WHERE tenant = %(tenant)s AND id = ANY(%(ids)s)
        """,
        {"loose": loose, "opts": HEADLINE_OPTIONS, "tenant": tenant, "ids": [h.chunk_id for h in hits]},
    )
    by_id = {r["id"]: r["h"] for r in await cur.fetchall()}
    for hit in hits:
        hit.highlights = headline_fragments(by_id.get(hit.chunk_id) or "")


async def search(pool: AsyncConnectionPool, tenant: str, params: SearchParams, vector: np.ndarray | None) -> list[Hit]:
    """The `k` best chunks for `params` (vector and hybrid modes need the query's `vector`)."""
    if params.mode != "keyword" and vector is None:
        raise ValueError(f"mode {params.mode} needs the query vector")

    async def known() -> np.ndarray:
        assert vector is not None
        return vector

    return await _search(pool, tenant, params, known, {})


async def _search(
    pool: AsyncConnectionPool,
    tenant: str,
    params: SearchParams,
    query_vector: Callable[[], Awaitable[np.ndarray]],
    latency: dict[str, float],
) -> list[Hit]:
    """Both legs at once, each in its own transaction; then fusion and highlights. Records each leg's time."""
    where, filter_params = to_sql(params.filters)
    n = params.k if params.mode != "hybrid" else max(params.k, params.candidates)
    legs: dict[str, list[dict[str, Any]]] = {"vector": [], "keyword": []}

    async def vector_leg() -> None:
        vector = await query_vector()
        t0 = time.perf_counter()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(params.ef_search)}")
            # keep scanning the index until n rows pass the tenant and the filters
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            legs["vector"] = await _vector_leg(conn, tenant, vector, n, where, filter_params)
        latency["vector_ms"] = _ms(t0)

    async def keyword_leg() -> None:
        t0 = time.perf_counter()
        async with pool.connection() as conn, conn.transaction():
            legs["keyword"] = await _keyword_leg(conn, tenant, params, n, where, filter_params)
        latency["keyword_ms"] = _ms(t0)

    async with anyio.create_task_group() as tg:
        if params.mode in ("vector", "hybrid"):
            tg.start_soon(vector_leg)
        if params.mode in ("keyword", "hybrid"):
            tg.start_soon(keyword_leg)
    hits = _combine(params, legs["vector"], legs["keyword"])
    if params.highlight and hits:
        async with pool.connection() as conn:
            await _highlight(conn, tenant, params.query, hits)
    return hits


def _combine(params: SearchParams, vector_rows: list[dict[str, Any]], keyword_rows: list[dict[str, Any]]) -> list[Hit]:
    hits: dict[int, Hit] = {}
    for rank, row in enumerate(vector_rows, start=1):
        hit = hits.setdefault(row["id"], Hit.from_row(row))
        hit.vector_score, hit.vector_rank = 1.0 - float(row["distance"]), rank
    for rank, row in enumerate(keyword_rows, start=1):
        hit = hits.setdefault(row["id"], Hit.from_row(row))
        hit.keyword_score, hit.keyword_rank = float(row["rank_score"]), rank
    if params.mode == "vector":
        order = [(r["id"], 1.0 - float(r["distance"])) for r in vector_rows]
    elif params.mode == "keyword":
        order = [(r["id"], float(r["rank_score"])) for r in keyword_rows]
    else:
        order = rrf(
            [
                ([r["id"] for r in vector_rows], params.vector_weight),
                ([r["id"] for r in keyword_rows], params.keyword_weight),
            ],
            params.rrf_k,
        )
    out = []
    for chunk_id, score in order[: params.k]:
        hit = hits[chunk_id]
        hit.score = score
        out.append(hit)
    return out


async def retrieve(pool: AsyncConnectionPool, embedder: Embedder, tenant: str, params: SearchParams) -> Retrieval:
    """Search, embedding the query (in a thread) when the mode needs it; with latency per stage:
    `embed_ms`, `vector_ms` and `keyword_ms` for each leg run, `search_ms` for all of it. In hybrid
    mode the keyword leg overlaps the embedding and the vector leg, so the parts add up to more."""
    latency: dict[str, float] = {}

    async def embed_query() -> np.ndarray:
        t0 = time.perf_counter()
        vector = (await anyio.to_thread.run_sync(embedder.embed, [params.query]))[0]
        latency["embed_ms"] = _ms(t0)
        return vector

    t0 = time.perf_counter()
    hits = await _search(pool, tenant, params, embed_query, latency)
    latency["search_ms"] = _ms(t0)
    return Retrieval(hits=hits, latency_ms=latency)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)
