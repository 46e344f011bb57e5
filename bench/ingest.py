"""Ingestion end to end, next to the embedder's own limit.

    .venv/bin/python -m bench.ingest                 # 40 PDFs of 5-50 pages, 1 and 2 workers
    .venv/bin/python -m bench.ingest --files 200     # the full corpus (slower)

Starts its own servers and API (free ports), uploads generated PDFs over HTTP with
workers already warm, and times until every file is `embedded`. In the same run: the
bare embedding throughput of the same chunks through the same embedder in one loop
(goal: pipeline >= 0.85 of it), plain fp32 sentence-transformers on a sample of them
(goal: ours >= 3.0x), and whether the faster precision keeps retrieval: top-10 overlap
of bf16 against fp32 vectors for sampled queries.
"""

import argparse
import asyncio
import os
import random
import sys
import time

import httpx
import numpy as np
import psycopg
from redis import Redis
from rq import Worker

from bench.common import median, pdf_document, record, table
from tests.fixtures.stack import NO_KEYS, Proc, Stack, rq_worker_argv, stack_dir, start_api, start_servers


async def upload_all(url: str, docs: list[bytes]) -> list[str]:
    sem = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def one(i: int, data: bytes) -> str:
            async with sem:
                r = await client.post("/upload", files=[("files", (f"report-{i}.pdf", data, "application/pdf"))])
                r.raise_for_status()
                return r.json()["files"][0]["file_id"]

        return await asyncio.gather(*(one(i, d) for i, d in enumerate(docs)))


def wait_embedded(client: httpx.Client, total: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/files", params={"status": "embedded", "limit": 1}).json()["total"] < total:
        failed = client.get("/files", params={"status": "failed", "limit": 5}).json()
        if failed["total"]:
            raise RuntimeError(f"files failed: {failed['items']}")
        if time.monotonic() > deadline:
            raise TimeoutError("ingestion did not finish")
        time.sleep(0.25)


def start_workers(stack: Stack, n: int) -> list[Proc]:
    threads = max(1, (os.cpu_count() or 2) // n)
    env = {"EMBEDDING_THREADS": str(threads)}
    procs = [stack.spawn(f"bench-worker-{n}-{i}", rq_worker_argv("ingest", burst=False), env=env) for i in range(n)]
    conn = Redis.from_url(stack.env["VALKEY_URL"])
    deadline = time.monotonic() + 120
    while len(Worker.all(connection=conn)) < n:  # registered only once warm (model loaded)
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not start")
        time.sleep(0.2)
    return procs


def run_pipeline(stack: Stack, url: str, docs: list[bytes], workers: int) -> dict[str, float]:
    procs = start_workers(stack, workers)
    with httpx.Client(base_url=url, timeout=60) as client:
        t0 = time.perf_counter()
        ids = asyncio.run(upload_all(url, docs))
        wait_embedded(client, len(ids))
        seconds = time.perf_counter() - t0
        files = [client.get(f"/files/{fid}").json() for fid in ids]
        for fid in ids:
            client.delete(f"/files/{fid}")
    for p in procs:
        p.stop(timeout=60)
    return {
        "seconds": seconds,
        "pages": sum(f["page_count"] or 0 for f in files),
        "chunks": sum(f["chunk_count"] or 0 for f in files),
    }


def chunk_texts(stack: Stack, docs: list[bytes], url: str) -> list[str]:
    """The chunks the pipeline makes of `docs` (one more pass with one worker, kept this time)."""
    procs = start_workers(stack, 1)
    ids = asyncio.run(upload_all(url, docs))
    with httpx.Client(base_url=url, timeout=60) as client:
        wait_embedded(client, len(ids))
    for p in procs:
        p.stop(timeout=60)
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return [r[0] for r in conn.execute("SELECT text FROM chunks ORDER BY file_id, ordinal")]


def embed_rate(embed, texts: list[str], batch: int = 256) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):  # as the worker does
        embed(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--min-pages", type=int, default=5)
    ap.add_argument("--max-pages", type=int, default=50)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=3, help="pipeline runs per worker count (median reported)")
    ap.add_argument("--sample", type=int, default=600, help="chunks for the sentence-transformers reference")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each embedding loop (median reported)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    rng = random.Random(7)
    docs = [pdf_document(rng, rng.randint(args.min_pages, args.max_pages)) for _ in range(args.files)]
    stack = start_servers(stack_dir("bench-ingest"))
    os.environ.update(stack.env)
    try:
        _, url = start_api(stack, env=NO_KEYS)
        all_runs: dict[int, list[dict[str, float]]] = {w: [] for w in args.workers}
        for _ in range(args.runs):  # interleaved, so each worker count sees the same machine
            for w in args.workers:
                all_runs[w].append(run_pipeline(stack, url, docs, w))
        runs = {w: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] for w, rs in all_runs.items()}
        texts = chunk_texts(stack, docs, url)
    finally:
        stack.stop_all()

    from app.embedding.embedder import load_embedder, model_dir
    from app.settings import Settings

    settings = Settings()
    ours = load_embedder(settings)
    bare = median([embed_rate(ours.embed, texts) for _ in range(args.repeat)])
    sample = random.Random(3).sample(texts, min(args.sample, len(texts)))
    ours_sample = median([embed_rate(ours.embed, sample) for _ in range(args.repeat)])
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir(settings)), device="cpu")
    st_rate = median([embed_rate(lambda t: st.encode(t, batch_size=32), sample) for _ in range(args.repeat)])

    # does the fast path keep retrieval? bf16 against fp32 over the sample
    fp32 = load_embedder(Settings(embedding_precision="fp32"), "torch").embed(sample)
    fast = ours.embed(sample)
    queries = [t.split(".")[0] for t in random.Random(5).sample(sample, min(50, len(sample)))]
    q32 = load_embedder(Settings(embedding_precision="fp32"), "torch").embed(queries)
    overlap = np.mean([
        len(set(np.argsort(-fp32 @ q)[:10]) & set(np.argsort(-fast @ q)[:10])) / 10 for q in q32
    ])  # fmt: skip
    cosine = float((fp32 * fast).sum(1).min())

    every_run = "; ".join(f"{w} worker(s) " + " / ".join(f"{r['seconds']:.1f}" for r in rs) + " s"
                          for w, rs in all_runs.items())  # fmt: skip
    rows = []
    for w, r in runs.items():
        rows.append({
            "workers": str(w), "files": str(args.files), "pages": str(r["pages"]), "chunks": str(r["chunks"]),
            "seconds": f"{r['seconds']:.1f}", "pages/s": f"{r['pages'] / r['seconds']:.1f}",
            "chunks/s": f"{r['chunks'] / r['seconds']:.1f}",
            "vs bare embedder": f"{r['chunks'] / r['seconds'] / bare:.2f}",
        })  # fmt: skip
    body = f"""`python -m bench.ingest --files {args.files}`: PDFs of {args.min_pages}-{args.max_pages} pages uploaded
over HTTP (4 concurrent clients) to warm workers, timed until every file is `embedded`; the
median of {args.runs} runs per worker count (every run: {every_run}).
Embedder: `{ours.name}`; with 2 workers each uses 1 thread.

{table(rows)}

| reference (same chunks, same process) | chunks/s |
|---|---|
| bare embedding loop, {len(texts)} chunks, `{ours.name}` (median of {args.repeat}) | {bare:.1f} |
| `{ours.name}` on a {len(sample)}-chunk sample | {ours_sample:.1f} |
| sentence-transformers fp32 on the same sample | {st_rate:.1f} |
| **ours / sentence-transformers fp32** | **{ours_sample / st_rate:.2f}x** (goal 3.0x) |

Quality of the fast path on the sample: min cosine to fp32 {cosine:.5f}; top-10 overlap with fp32
rankings over {len(queries)} queries {overlap:.3f}.
"""
    record("Ingestion", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
