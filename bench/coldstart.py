"""Worker cold start: from `rq worker` starting to the first chunk embedded (goal <= 2 s).

    .venv/bin/python -m bench.coldstart

A small file is uploaded and queued first; then a worker process is started and the
clock runs until the file is `embedded`. Median of several starts.
"""

import argparse
import os
import sys
import time

import httpx

from bench.common import median, record, table
from tests.fixtures.stack import NO_KEYS, rq_worker_argv, stack_dir, start_api, start_servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    stack = start_servers(stack_dir("bench-cold"))
    os.environ.update(stack.env)
    times = []
    try:
        _, url = start_api(stack, env=NO_KEYS)
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(args.repeat):
                text = f"Cold start probe {i}: the pilot boarded the vessel at the outer buoy.".encode()
                fid = c.post("/upload", files=[("files", (f"cold-{i}.txt", text, "text/plain"))]).json()["files"][0][
                    "file_id"
                ]
                t0 = time.perf_counter()
                worker = stack.spawn(f"cold-{i}", rq_worker_argv("ingest", burst=True))
                while c.get(f"/files/{fid}").json()["status"] != "embedded":
                    if worker.popen.poll() not in (None, 0):
                        raise RuntimeError(worker.tail())
                    time.sleep(0.01)
                times.append(time.perf_counter() - t0)
                worker.popen.wait(60)
    finally:
        stack.stop_all()
    rows = [{"start": str(i + 1), "seconds to first file embedded": f"{t:.2f}"} for i, t in enumerate(times)]
    body = f"""`python -m bench.coldstart`: `rq worker` process start (imports, model load, connections)
to a queued one-chunk file `embedded`.

{table(rows)}

Median **{median(times):.2f} s** (goal <= 2 s).
"""
    record("Worker cold start", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
