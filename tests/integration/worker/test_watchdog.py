"""The watchdog's and sweeper's repairs (orphan chunks and bytes, abandoned uploads, unfinished
deletes) and the queue depth it publishes to CloudWatch (moto)."""

import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from pymongo import MongoClient

from app.settings import get_settings
from app.status import now
from tests.fixtures.api import unique, upload, wait_final
from tests.fixtures.stack import Stack
from tests.fixtures.worker import run_worker


def test_sweep_removes_orphan_chunks_and_bytes(client: httpx.Client, stack: Stack, data_dir: Path) -> None:
    from worker.watchdog import sweep, watch

    kept = upload(client, ("kept-sweep.txt", unique("Chunks that belong to a file."))).json()["files"][0]["file_id"]
    run_worker()
    wait_final(client, [kept])
    orphan = str(uuid.uuid4())
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
            "SELECT tenant, %s, 0, 'orphan', 'x', 'text/plain', embedding FROM chunks LIMIT 1",
            (orphan,),
        )
    (data_dir / "uploads" / orphan).mkdir(parents=True)
    (data_dir / "uploads" / orphan / "x.txt").write_text("orphan bytes")

    done = sweep(watch())
    assert done["orphan_chunk_files"] >= 1 and done["orphan_blobs"] >= 1
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE file_id = %s", (orphan,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM chunks WHERE file_id = %s", (kept,)).fetchone()[0] >= 1
    assert not (data_dir / "uploads" / orphan).exists() and (data_dir / "uploads" / kept).exists()


def test_watchdog_removes_abandoned_uploads_and_finishes_deletes(stack: Stack, data_dir: Path) -> None:
    from worker.watchdog import run_once, watch

    s = get_settings()
    col = MongoClient(s.mongo_url.get_secret_value())[s.mongo_db]["files"]
    old = now() - timedelta(days=2)
    abandoned, half_deleted = str(uuid.uuid4()), str(uuid.uuid4())
    base = {"tenant": "default", "filename": "x.txt", "attempts": 0, "error": None}
    col.insert_one({**base, "_id": abandoned, "status": "saving", "created_at": old, "updated_at": old})
    col.insert_one({**base, "_id": half_deleted, "status": "deleting", "created_at": old, "updated_at": old})
    (data_dir / "uploads" / abandoned).mkdir(parents=True)
    (data_dir / "uploads" / abandoned / "x.txt.part").write_text("partial")

    done = run_once(watch())
    assert done["abandoned_uploads_removed"] >= 1 and done["deletes_finished"] >= 1
    assert col.count_documents({"_id": {"$in": [abandoned, half_deleted]}}) == 0
    assert not (data_dir / "uploads" / abandoned).exists()


def test_watchdog_publishes_queue_depth_to_cloudwatch(s3_env: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    from redis import Redis
    from rq import Queue

    from app.settings import Settings
    from worker.watchdog import cloudwatch_client, publish_queue_depth, watch

    w = watch()
    queue = Queue(w.settings.queue_name, connection=Redis.from_url(w.settings.valkey_url.get_secret_value()))
    queue.enqueue("worker.jobs.process_file", "not-a-file", job_id="depth-probe")
    settings = Settings(cloudwatch_region="us-east-1", cloudwatch_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        cloudwatch_namespace="DocprocTest")  # fmt: skip
    cw = cloudwatch_client(settings)
    try:
        depth = publish_queue_depth(dataclasses.replace(w, settings=settings), cw)
    finally:
        queue.remove("depth-probe")
    assert depth >= 1
    (metric,) = cw.list_metrics(Namespace="DocprocTest")["Metrics"]
    assert metric["MetricName"] == "QueueDepth"
    assert metric["Dimensions"] == [{"Name": "Queue", "Value": w.settings.queue_name}]
