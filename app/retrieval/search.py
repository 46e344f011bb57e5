"""Search: the `k` best chunks for a query, by meaning (`vector`), by words (`keyword`) or both
(`hybrid`), restricted by filters; the statements are the chunks store's (app/stores/chunks/reader.py).

- vector: the query embedded (in a thread), then the nearest chunks (HNSW, cosine).
- keyword: the chunks that best match the query's words (PostgreSQL full text, `ts_rank`).
- hybrid: reciprocal rank fusion of both lists, `sum(weight / (RRF_K + rank))`,
  each list `max(k, HYBRID_CANDIDATES)` long. The two legs run at once, each on its own
  connection, the keyword leg while the query is being embedded: the latency is the
  slower leg's, not their sum.
- highlights (`highlight: true`): the store's headlines, as HTML-escaped fragments with the
  query's words in `<mark>`.
"""

import html
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from app.embedding.embedder import Embedder
from app.retrieval.params import SearchParams
from app.stores.chunks.reader import FRAGMENT_SEP, MARK_START, MARK_STOP, ChunkSearch, Row


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


def headline_fragments(headline: str) -> list[str]:
    """ts_headline output -> HTML-escaped fragments with matches in <mark>, only those with a match."""
    out = []
    for fragment in headline.split(FRAGMENT_SEP):
        if MARK_START not in fragment:
            continue
        escaped = html.escape(fragment.strip(), quote=False)
        marked = escaped.replace(MARK_START, "<mark>").replace(MARK_STOP, "</mark>")
        out.append(marked.replace("</mark><mark>", ""))  # one mark over a code's parts (XK-4471)
    return out


async def search(chunks: ChunkSearch, tenant: str, params: SearchParams, vector: np.ndarray | None) -> list[Hit]:
    """The `k` best chunks for `params` (vector and hybrid modes need the query's `vector`)."""
    if params.mode != "keyword" and vector is None:
        raise ValueError(f"mode {params.mode} needs the query vector")

    async def known() -> np.ndarray:
        assert vector is not None
        return vector

    return await _search(chunks, tenant, params, known, {})


async def _search(
    chunks: ChunkSearch,
    tenant: str,
    params: SearchParams,
    query_vector: Callable[[], Awaitable[np.ndarray]],
    latency: dict[str, float],
) -> list[Hit]:
    """Both legs at once, each on its own connection; then fusion and highlights. Records each leg's time."""
    n = params.k if params.mode != "hybrid" else max(params.k, params.candidates)
    legs: dict[str, list[Row]] = {"vector": [], "keyword": []}

    async def vector_leg() -> None:
        vector = await query_vector()
        t0 = time.perf_counter()
        legs["vector"] = await chunks.nearest(tenant, vector, n, params.filters, params.ef_search)
        latency["vector_ms"] = since_ms(t0)

    async def keyword_leg() -> None:
        t0 = time.perf_counter()
        legs["keyword"] = await chunks.matching(tenant, params.query, n, params.filters, params.common_word_chunks)
        latency["keyword_ms"] = since_ms(t0)

    async with anyio.create_task_group() as tg:
        if params.mode in ("vector", "hybrid"):
            tg.start_soon(vector_leg)
        if params.mode in ("keyword", "hybrid"):
            tg.start_soon(keyword_leg)
    hits = _combine(params, legs["vector"], legs["keyword"])
    if params.highlight and hits:
        by_id = await chunks.headlines(tenant, params.query, [h.chunk_id for h in hits])
        for hit in hits:
            hit.highlights = headline_fragments(by_id.get(hit.chunk_id) or "")
    return hits


def _combine(params: SearchParams, vector_rows: list[Row], keyword_rows: list[Row]) -> list[Hit]:
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


async def retrieve(chunks: ChunkSearch, embedder: Embedder, tenant: str, params: SearchParams) -> Retrieval:
    """Search, embedding the query (in a thread) when the mode needs it; with latency per stage:
    `embed_ms`, `vector_ms` and `keyword_ms` for each leg run, `search_ms` for all of it. In hybrid
    mode the keyword leg overlaps the embedding and the vector leg, so the parts add up to more."""
    latency: dict[str, float] = {}

    async def embed_query() -> np.ndarray:
        t0 = time.perf_counter()
        vector = (await anyio.to_thread.run_sync(embedder.embed, [params.query]))[0]
        latency["embed_ms"] = since_ms(t0)
        return vector

    t0 = time.perf_counter()
    hits = await _search(chunks, tenant, params, embed_query, latency)
    latency["search_ms"] = since_ms(t0)
    return Retrieval(hits=hits, latency_ms=latency)


def since_ms(t0: float) -> float:
    """Milliseconds since `t0` (a `time.perf_counter()`), to two decimals."""
    return round((time.perf_counter() - t0) * 1000, 2)
