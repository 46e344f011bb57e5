"""The API under load: uploads of 1 MB files, status polling, and the API's memory.

    .venv/bin/python -m bench.http

Starts its own servers and one API process (uvicorn, no workers draining the queue),
and next to it a bare FastAPI endpoint that only streams the same request bodies to
disk (goal: our upload throughput >= 0.6x of it). Load comes from this process with
aiohttp, the same client for both (httpx cost 6 ms of CPU per request at 64 clients,
more than the API it measured; aiohttp 0.3 ms). Every process's CPU time per request
is reported too: on one 2-core machine they all share the cores.
"""

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import httpx

from bench.common import Load, cpu_per_request, hot_spots, load, median, profiled, record, rss_mb, table
from devstack.servers import free_port
from tests.fixtures.stack import NO_KEYS, stack_dir, start_api, start_servers

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


RUN = uuid.uuid4().hex  # bodies differ across runs too: a repeated body would be a duplicate


def body(i: int) -> bytes:
    """1 MB of text, different for every request (no deduplication)."""
    line = f"upload {RUN} {i}: the harbour report line with some words in it\n".encode()
    return (line * (MB // len(line) + 1))[:MB]


_sent = itertools.count(0, 1_000_000)  # each load its own range of bodies


def session(url: str, concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=concurrency),
                                 timeout=aiohttp.ClientTimeout(total=120))  # fmt: skip


async def uploads(url: str, n: int, concurrency: int) -> Load:
    offset = next(_sent)
    async with session(url, concurrency) as s:

        async def one(i: int) -> bool:
            form = aiohttp.FormData()
            form.add_field("files", body(offset + i), filename=f"bench-{i}.txt", content_type="text/plain")
            async with s.post("/upload", data=form) as r:
                await r.read()
                return r.status in (200, 202)

        return await load(one, n, concurrency)


async def polls(url: str, ids: list[str], n: int, concurrency: int) -> Load:
    async with session(url, concurrency) as s:

        async def one(i: int) -> bool:
            async with s.get(f"/files/{ids[i % len(ids)]}") as r:
                await r.read()
                return r.status == 200

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
    ap.add_argument("--profile", type=Path, help="also sample the API and MongoDB with py-spy into this directory")
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
        pids = {"API": api.popen.pid, "bare endpoint": next(p for p in stack.procs if p.name == "bare").popen.pid,
                "MongoDB (SecantusDB)": stack.servers["mongo"].popen.pid, "Valkey": stack.servers["valkey"].popen.pid,
                "load client": os.getpid()}  # fmt: skip
        ours_runs, bare_runs = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            ours_runs.append(cpu_per_request(pids, lambda: asyncio.run(uploads(url, args.uploads, 32))))
            bare_runs.append(cpu_per_request(pids, lambda: asyncio.run(uploads(bare, args.uploads, 32))))
        if args.profile:
            with profiled({"api-upload": api.popen.pid, "mongo-upload": pids["MongoDB (SecantusDB)"]}, args.profile):
                asyncio.run(uploads(url, args.uploads, 32))
        ratio = median([o[0].rps / b[0].rps for o, b in zip(ours_runs, bare_runs, strict=True)])
        ours, ours_cpu = middle(ours_runs)
        ref, ref_cpu = middle(bare_runs)

        total = args.uploads * (args.repeat + bool(args.profile)) + 16
        extra = max(0, args.rss_uploads - total)
        if extra:
            asyncio.run(uploads(url, extra, 32))
        api_rss, api_peak = rss_mb(api.popen.pid)

        with httpx.Client(base_url=url) as c:
            ids = [f["file_id"] for f in c.get("/files", params={"limit": 500}).json()["items"]]
        poll_runs = [cpu_per_request(pids, lambda: asyncio.run(polls(url, ids, args.polls, 64)))
                     for _ in range(args.repeat)]  # fmt: skip
        if args.profile:
            with profiled({"api-poll": api.popen.pid, "mongo-poll": pids["MongoDB (SecantusDB)"]}, args.profile):
                asyncio.run(polls(url, ids, args.polls, 64))
        poll, poll_cpu = middle(poll_runs)
    finally:
        stack.stop_all()

    rows = [
        {"what": "POST /upload, 1 MB, 32 clients", **ours.row()},
        {"what": "bare FastAPI streaming to disk, same load", **ref.row()},
        {"what": "GET /files/{id}, 64 clients", **poll.row()},
    ]
    cpu_rows = [
        {"process": name, "upload": f"{ours_cpu[name]:.2f}", "bare upload": f"{ref_cpu[name]:.2f}",
         "GET /files/{id}": f"{poll_cpu[name]:.2f}"}
        for name in pids
    ]  # fmt: skip
    cpu_rows.append({"process": "**all**", "upload": f"**{sum(ours_cpu.values()):.2f}**",
                     "bare upload": f"**{sum(ref_cpu.values()):.2f}**",
                     "GET /files/{id}": f"**{sum(poll_cpu.values()):.2f}**"})  # fmt: skip
    body_md = f"""`python -m bench.http`: one API process (uvicorn), the load from one Python process (aiohttp);
the run with the median throughput of {args.repeat} interleaved runs.

{table(rows)}

Upload throughput against the bare endpoint: **{ratio:.2f}x** (median of the {args.repeat} pairs; goal >= 0.6x).
API process after {max(args.rss_uploads, total)} uploads: RSS {api_rss} MB (peak {api_peak} MB).

CPU milliseconds per request, by process (the same runs; every process shares the {os.cpu_count()} cores):

{table(cpu_rows)}
"""
    record("HTTP: uploads and status polling", body_md, write=not args.no_write)
    for trace in sorted(args.profile.glob("*.txt")) if args.profile else []:
        print(f"\n{trace.stem}: inclusive share of samples")
        for fn, share in hot_spots(trace, top=25):
            print(f"  {share:6.1%}  {fn}")


def middle(runs: list[tuple[Load, dict[str, float]]]) -> tuple[Load, dict[str, float]]:
    """The run with the median throughput."""
    return sorted(runs, key=lambda r: r[0].rps)[len(runs) // 2]


if __name__ == "__main__":
    sys.exit(main())
