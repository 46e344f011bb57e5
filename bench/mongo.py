"""What one MongoDB operation of the upload and worker paths costs, by query shape.

    .venv/bin/python -m bench.mongo                  # 0, 1,000 and 5,000 files in the collection

Starts its own SecantusDB (the local stack's MongoDB-compatible server) and times each
shape with one client, sequentially, next to the shape the code used before: why the
stores use `update_one` compare-and-sets, a `{tenant, sha256}` dedup lookup and a cached
pending count (app/stores/files.py). Server CPU comes from /proc, per operation.
"""

import argparse
import sys
import time
import uuid
from collections.abc import Callable

from pymongo import ASCENDING, MongoClient

from app.status import FileStatus, now, transition
from app.stores.files import DEDUP_STATES, INDEXES, PENDING_STATES
from bench.common import cpu_seconds, record, table
from tests.fixtures.stack import stack_dir, start_servers


def shapes(col, ids: list[str], ops: int) -> list[tuple[str, int, Callable[[int], object]]]:  # noqa: ANN001
    """(name, how many times, operation on the i-th saving file) for each shape measured."""

    def to_queued(i: int) -> dict:
        return transition(FileStatus.SAVING, FileStatus.QUEUED, queued_at=now(), sha256=uuid.uuid4().hex)[1]

    return [
        ("status change: find_one_and_update {_id, tenant, status} (before)", ops // 10,
         lambda i: col.find_one_and_update({"_id": ids[i], "tenant": "t", "status": "saving"},
                                           {"$set": {"updated_at": now()}})),
        ("status change: update_one {_id, tenant, status} (now)", ops,
         lambda i: col.update_one({"_id": ids[i], "tenant": "t", "status": "saving"}, to_queued(i))),
        ("read one: find_one {_id, tenant}", ops, lambda i: col.find_one({"_id": ids[i], "tenant": "t"})),
        ("dedup: {tenant, sha256, status $in} sorted (before)", ops // 10,
         lambda i: col.find_one({"tenant": "t", "sha256": "x", "status": {"$in": DEDUP_STATES}},
                                sort=[("created_at", ASCENDING)])),
        ("dedup: {tenant, sha256} sorted, status checked in Python (now)", ops,
         lambda i: list(col.find({"tenant": "t", "sha256": "x"}).sort("created_at", ASCENDING))),
        ("pending count: count_documents {tenant, status $in}", ops // 10,
         lambda i: col.count_documents({"tenant": "t", "status": {"$in": PENDING_STATES}})),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 5000])
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    stack = start_servers(stack_dir("bench-mongo"))
    rows = []
    try:
        server = {"mongo": stack.servers["mongo"].popen.pid}
        col = MongoClient(stack.env["MONGO_URL"])["bench"]["files"]
        for keys, opts in INDEXES:
            col.create_index(keys, **opts)
        for size in args.sizes:
            col.delete_many({})
            if size:  # a backlog: queued files of one tenant
                col.insert_many([{"_id": str(uuid.uuid4()), "tenant": "t", "status": "queued", "created_at": now(),
                                  "updated_at": now(), "sha256": uuid.uuid4().hex} for _ in range(size)])  # fmt: skip
            ids = [str(uuid.uuid4()) for _ in range(args.ops)]
            col.insert_many([{"_id": i, "tenant": "t", "status": "saving", "created_at": now()} for i in ids])

            for name, n, op in shapes(col, ids, args.ops):
                before, t0 = cpu_seconds(server)["mongo"], time.perf_counter()
                for i in range(n):
                    op(i)
                wall = (time.perf_counter() - t0) / n
                cpu = (cpu_seconds(server)["mongo"] - before) / n
                rows.append({"files in collection": f"{size:,}", "operation": name,
                             "ms per op": f"{wall * 1000:.2f}", "server CPU ms": f"{cpu * 1000:.2f}"})  # fmt: skip
    finally:
        stack.stop_all()
    body = f"""`python -m bench.mongo`: one client, sequential operations against the local stack's
SecantusDB, with the indexes of app/stores/files.py; the backlog is queued files of one tenant.

{table(rows)}
"""
    record("MongoDB operations by query shape", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
