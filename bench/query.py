"""Query latency at 10k and 100k chunks, and HNSW recall against exact search.

    .venv/bin/python -m bench.query                  # 10k and 100k chunks
    .venv/bin/python -m bench.query --sizes 10000    # quicker

Starts its own servers and API. Chunks are written straight into PostgreSQL: texts are
3-8 real sentences each, from the standard library's docstrings; a chunk's vector is the
normalised mean of its sentences' real embeddings (so neighbourhoods are a real corpus's,
not clusters of noise around a few thousand points).
`/query` is timed over HTTP from this process, query embedding included, for each
mode; goal at 100k: hybrid p50 <= 30 ms, p99 <= 100 ms. Recall@10 of the HNSW index
(ef_search as configured) against exact search on the same vectors: goal >= 0.95.
"""

import argparse
import asyncio
import os
import random
import sys
import time
import uuid

import httpx
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench.common import docstring_sentences, load, percentile, record, table
from tests.fixtures.stack import NO_KEYS, stack_dir, start_api, start_servers


def corpus(n: int, rng: random.Random) -> tuple[list[str], list[list[int]]]:
    """Chunks of 3-8 real sentences (docstrings of the standard library), each chunk distinct;
    with each chunk, the indices of its sentences in `docstring_sentences()`."""
    sentences = docstring_sentences()
    picks = [rng.sample(range(len(sentences)), rng.randint(3, 8)) for _ in range(n)]
    return [" ".join(sentences[i] for i in pick) for pick in picks], picks


def chunk_vectors(embedder, picks: list[list[int]]) -> np.ndarray:  # noqa: ANN001
    """A chunk's vector: the normalised mean of its sentences' embeddings. Embedding 100k
    chunks would take half an hour here; 14k short sentences take a minute, and the mean keeps
    the corpus's real neighbourhoods (MiniLM itself mean-pools)."""
    by_sentence = embedder.embed(list(docstring_sentences()))
    vectors = np.stack([by_sentence[pick].mean(axis=0) for pick in picks]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(database_url: str, texts: list[str], vectors: np.ndarray) -> None:
    """Replace the chunks with these; the HNSW index is rebuilt afterwards from its own definition
    (app/stores/chunks.py), which takes a third of the time of inserting into it row by row."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'").fetchone()
        index_sql = row[0]
        conn.execute("DROP INDEX chunks_embedding_hnsw")
        conn.execute("TRUNCATE chunks")
    with psycopg.connect(database_url) as conn:
        register_vector(conn)
        files = [uuid.uuid4() for _ in range(max(1, len(texts) // 50))]
        columns = "tenant, file_id, ordinal, text, filename, content_type, embedding"
        with conn.cursor() as cur, cur.copy(f"COPY chunks ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "uuid", "int4", "text", "text", "text", "vector"])
            for i, (text, vec) in enumerate(zip(texts, vectors, strict=True)):
                copy.write_row(("default", files[i % len(files)], i // len(files), text, f"doc-{i % len(files)}.pdf",
                                "application/pdf", vec))  # fmt: skip
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(index_sql)
        conn.execute("VACUUM ANALYZE chunks")


def recall_at_10(database_url: str, vectors: np.ndarray, queries: np.ndarray, ef_search: int) -> float:
    with psycopg.connect(database_url) as conn:
        register_vector(conn)
        conn.execute(f"SET hnsw.ef_search = {ef_search}")
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")])
        hits = []
        for q in queries:
            rows = conn.execute("SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (q,)).fetchall()
            approx = {r[0] for r in rows}
            exact = set(ids[np.argsort(-(vectors @ q))[:10]])
            hits.append(len(approx & exact) / 10)
        return float(np.mean(hits))


async def timed_queries(url: str, questions: list[str], mode: str, concurrency: int = 1) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:

        async def one(i: int) -> bool:
            r = await c.post("/query", json={"query": questions[i % len(questions)], "k": 10, "mode": mode})
            return r.status_code == 200

        result = await load(one, len(questions), concurrency)
    assert result.errors == 0, f"{result.errors} failed queries in mode {mode}"
    return result.latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[100, 200, 400],
                    help="hnsw.ef_search values for the recall table (the API uses HNSW_EF_SEARCH)")  # fmt: skip
    ap.add_argument("--skip-latency", action="store_true", help="recall only")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from app.embedding.embedder import load_embedder
    from app.settings import Settings

    rng = random.Random(11)
    settings = Settings()
    embedder = load_embedder(settings, "onnx")  # as the API embeds queries
    texts, picks = corpus(max(args.sizes), rng)
    vectors = chunk_vectors(load_embedder(settings), picks)
    questions = [q.rsplit(" ", 3)[0] for q in rng.sample(docstring_sentences(), args.queries)]
    codes = [f"{w} {rng.choice(['QX', 'B7', 'T-'])}{rng.randint(100, 999)}" for w in ("berth", "crane", "tug")]

    stack = start_servers(stack_dir("bench-query"))
    os.environ.update(stack.env)
    rows, recalls = [], []
    try:
        _, url = start_api(stack, env=NO_KEYS)
        for n in sorted(args.sizes):
            t0 = time.perf_counter()
            fill(stack.env["DATABASE_URL"], texts[:n], vectors[:n])
            load_s = time.perf_counter() - t0
            q_vectors = embedder.embed(questions[:100])
            for ef in args.ef_search:
                recall = recall_at_10(stack.env["DATABASE_URL"], vectors[:n], q_vectors, ef)
                label = f"{ef} (configured)" if ef == settings.hnsw_ef_search else str(ef)
                recalls.append({"chunks": f"{n:,}", "ef_search": label, "recall@10": f"{recall:.3f}",
                                "load + index s": f"{load_s:.0f}"})  # fmt: skip
            for mode in () if args.skip_latency else ("vector", "keyword", "hybrid"):
                asyncio.run(timed_queries(url, questions[:20] + codes, mode))  # warm
                lat = asyncio.run(timed_queries(url, questions, mode))
                rows.append({"chunks": f"{n:,}", "mode": mode, "queries": str(len(lat)),
                             "p50 ms": f"{percentile(lat, 50) * 1000:.1f}",
                             "p99 ms": f"{percentile(lat, 99) * 1000:.1f}"})  # fmt: skip
    finally:
        stack.stop_all()
    latency = table(rows) if rows else "(latency not measured: --skip-latency)"
    body = f"""`python -m bench.query`: `POST /query` (k=10) over HTTP, one client, query embedding included
(ONNX in the API), one API process. Chunks of 3-8 sentences drawn from the standard library's
docstrings (about 14,000 real sentences); queries are sentences of the same pool minus their last 3 words.

{latency}

HNSW against exact search on the same vectors (100 queries):

{table(recalls)}
"""
    record("Query latency and HNSW recall", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
