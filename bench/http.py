"""The API under load: uploads of 1 MB files, status polling, and the API's memory.

    .venv/bin/python -m bench.http

Starts its own servers and one API process (uvicorn, no workers draining the queue),
and next to it a bare FastAPI endpoint that only streams the same request bodies to
disk (goal: our upload throughput >= 0.6x of it). Load comes from this process with
httpx (the same client for both, so the ratio is fair even if the client is a limit).
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.localstack import free_port
from bench.common import Load, load, record, rss_mb, table
from tests.stack import NO_KEYS, stack_dir, start_api, start_servers

BARE_APP = """
import uuid, aiofiles
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/upload")
async def upload(request: Request):
    async with aiofiles.open(f"{DIR}/{uuid.uuid4()}", "wb") as f:
        async for chunk in request.stream():
            await f.write(chunk)
    return {"ok": True}
@app.get("/health")
async def health():
    return {"status": "ok"}
"""

MB = 1024 * 1024


def body(i: int) -> bytes:
    """1 MB of text, different for every request (no deduplication)."""
    line = f"upload {i}: the harbour report line with some words in it\n".encode()
    return (line * (MB // len(line) + 1))[:MB]


async def uploads(url: str, n: int, concurrency: int) -> Load:
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def one(i: int) -> bool:
            r = await c.post("/upload", files=[("files", (f"bench-{i}.txt", body(i), "text/plain"))])
            return r.status_code in (200, 202)

        return await load(one, n, concurrency)


async def polls(url: str, ids: list[str], n: int, concurrency: int) -> Load:
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def one(i: int) -> bool:
            return (await c.get(f"/files/{ids[i % len(ids)]}")).status_code == 200

        return await load(one, n, concurrency)


def start_bare(stack, out_dir: Path) -> str:  # noqa: ANN001
    app_dir = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    (app_dir / "bare.py").write_text(BARE_APP.replace("{DIR}", str(out_dir)))
    port = free_port()
    stack.spawn("bare", [sys.executable, "-m", "uvicorn", "bare:app", "--app-dir", str(app_dir),
                         "--host", "127.0.0.1", "--port", str(port)])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError("bare app did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=320)
    ap.add_argument("--rss-uploads", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    stack = start_servers(stack_dir("bench-http"))
    os.environ.update(stack.env)
    try:
        api, url = start_api(stack, env={"MAX_UPLOAD_BYTES": str(4 * MB), **NO_KEYS})
        bare_dir = Path(tempfile.mkdtemp(prefix="bench-bare-out-"))
        bare = start_bare(stack, bare_dir)
        asyncio.run(uploads(url, 16, 8))  # warm-up
        asyncio.run(uploads(bare, 16, 8))
        ours_runs, bare_runs = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            ours_runs.append(asyncio.run(uploads(url, args.uploads, 32)))
            bare_runs.append(asyncio.run(uploads(bare, args.uploads, 32)))
        ours = sorted(ours_runs, key=lambda r: r.rps)[len(ours_runs) // 2]
        ref = sorted(bare_runs, key=lambda r: r.rps)[len(bare_runs) // 2]

        total = args.uploads * args.repeat + 16
        extra = max(0, args.rss_uploads - total)
        if extra:
            asyncio.run(uploads(url, extra, 32))
        api_rss, api_peak = rss_mb(api.popen.pid)

        with httpx.Client(base_url=url) as c:
            ids = [f["file_id"] for f in c.get("/files", params={"limit": 500}).json()["items"]]
        poll_runs = [asyncio.run(polls(url, ids, args.polls, 64)) for _ in range(args.repeat)]
        poll = sorted(poll_runs, key=lambda r: r.rps)[len(poll_runs) // 2]
    finally:
        stack.stop_all()

    rows = [
        {"what": "POST /upload, 1 MB, 32 clients", **ours.row()},
        {"what": "bare FastAPI streaming to disk, same load", **ref.row()},
        {"what": "GET /files/{id}, 64 clients", **poll.row()},
    ]
    body_md = f"""`python -m bench.http`: one API process (uvicorn), the load from one Python process (httpx);
medians of {args.repeat} interleaved runs.

{table(rows)}

Upload throughput against the bare endpoint: **{ours.rps / ref.rps:.2f}x** (goal >= 0.6x).
API process after {max(args.rss_uploads, total)} uploads: RSS {api_rss} MB (peak {api_peak} MB).
"""
    record("HTTP: uploads and status polling", body_md, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
