"""The watchdog: repairs what a crash or a lost queue leaves behind.

`python -m worker.watchdog` runs it in a loop (under supervisord locally, as its
own role in deployments); `run_once` and `sweep` are plain functions the tests
call directly. Each pass:
- a `processing` file whose heartbeat stopped (its worker was killed) goes back
  to `queued` with a new job, or to `failed` (worker_lost) after MAX_ATTEMPTS;
- a `queued` file with no live RQ job behind it (Valkey lost its data) gets one;
- a `saving` file older than SAVING_TIMEOUT_S (the API died mid-upload) is removed;
- a `deleting` file whose delete was interrupted is finished.
Less often, `sweep` removes chunks and stored bytes that no status document owns,
and with CLOUDWATCH_METRICS=true the queue's depth goes to CloudWatch (`QueueDepth`),
which the workers' Auto Scaling group scales on.
Every action is a compare-and-set on the status document, so two watchdogs, or a
watchdog racing a worker, do no harm.
"""

import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import psycopg
from pymongo import MongoClient

from app.logs import setup_logging
from app.settings import Settings, get_settings
from app.status import FileStatus
from app.stores.blobs import DiskBlobs, S3Blobs, make_blob_store
from app.stores.chunks import ensure_schema
from app.stores.files import SyncFileStore, ago
from app.stores.jobs import JobQueue

log = logging.getLogger("worker.watchdog")
DELETE_GRACE_S = 60  # a delete the API is still doing is left to the API


@dataclass
class Watch:
    settings: Settings
    files: SyncFileStore
    jobs: JobQueue
    blobs: DiskBlobs | S3Blobs


@lru_cache
def watch() -> Watch:
    settings = get_settings()
    mongo = MongoClient(settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000, tz_aware=True)
    return Watch(settings, SyncFileStore(mongo, settings.mongo_db), JobQueue(settings), make_blob_store(settings))


def _delete_everything(w: Watch, file_id: str) -> None:
    with psycopg.connect(w.settings.database_url.get_secret_value()) as conn:
        conn.execute("DELETE FROM chunks WHERE file_id = %s", (file_id,))
    w.blobs.delete_file_sync(file_id)
    w.files.delete(file_id)


def run_once(w: Watch) -> Counter:
    s = w.settings
    done: Counter = Counter()

    cutoff = ago(s.heartbeat_timeout_s)
    for doc in w.files.silent_processing(cutoff):
        fid = doc["_id"]
        if doc.get("attempts", 0) >= s.max_attempts:
            if w.files.fail_lost(fid, cutoff):
                done["failed_worker_lost"] += 1
        elif w.files.requeue_lost(fid, cutoff, last_error="worker lost: heartbeat stopped"):
            w.jobs.enqueue_file(fid, doc.get("size") or 0)
            done["requeued_lost"] += 1

    live = w.jobs.live_job_ids()
    for doc in w.files.in_state_since(FileStatus.QUEUED, "queued_at", ago(s.queued_grace_s)):
        if doc["_id"] not in live:
            w.jobs.enqueue_file(doc["_id"], doc.get("size") or 0)
            done["reenqueued"] += 1

    for doc in w.files.in_state_since(FileStatus.SAVING, "created_at", ago(s.saving_timeout_s)):
        w.blobs.delete_file_sync(doc["_id"])
        w.files.delete(doc["_id"])
        done["abandoned_uploads_removed"] += 1

    for doc in w.files.in_state_since(FileStatus.DELETING, "updated_at", ago(DELETE_GRACE_S)):
        _delete_everything(w, doc["_id"])
        done["deletes_finished"] += 1

    if done:
        log.info("watchdog pass: %s", dict(done))
    return done


def _orphans(w: Watch, file_ids: list[str]) -> list[str]:
    existing: set[str] = set()
    for start in range(0, len(file_ids), 1000):
        existing |= w.files.existing_ids(file_ids[start : start + 1000])
    return [f for f in file_ids if f not in existing]


def sweep(w: Watch) -> Counter:
    """Remove chunks and stored bytes with no status document.

    Listing comes before the look-up, and a document is always written before its
    bytes and chunks, so something listed without a document was truly orphaned.
    """
    done: Counter = Counter()
    database_url = w.settings.database_url.get_secret_value()
    with psycopg.connect(database_url) as conn:
        chunk_files = [r[0] for r in conn.execute("SELECT DISTINCT file_id::text FROM chunks")]
        for fid in _orphans(w, chunk_files):
            conn.execute("DELETE FROM chunks WHERE file_id = %s", (fid,))
            done["orphan_chunk_files"] += 1
    for fid in _orphans(w, w.blobs.list_file_ids()):
        w.blobs.delete_file_sync(fid)
        done["orphan_blobs"] += 1
    if done:
        log.info("sweep: %s", dict(done))
    return done


def publish_queue_depth(w: Watch, cloudwatch) -> int:  # noqa: ANN001 - boto3 client
    """Put the queue's length to CloudWatch (`QueueDepth`, dimension `Queue`): the workers scale on it."""
    depth = w.jobs.depth()
    cloudwatch.put_metric_data(
        Namespace=w.settings.cloudwatch_namespace,
        MetricData=[{
            "MetricName": "QueueDepth",
            "Dimensions": [{"Name": "Queue", "Value": w.settings.queue_name}],
            "Value": depth,
            "Unit": "Count",
        }],
    )  # fmt: skip
    return depth


def cloudwatch_client(settings: Settings):  # noqa: ANN201 - boto3 client
    import boto3

    return boto3.client(
        "cloudwatch", region_name=settings.cloudwatch_region, endpoint_url=settings.cloudwatch_endpoint_url
    )


def main() -> None:
    settings = get_settings()
    setup_logging(settings, "watchdog")  # JSON lines (LOG_FORMAT), optional GELF
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ensure_schema(settings.database_url.get_secret_value())
    w = watch()
    cloudwatch = cloudwatch_client(settings) if settings.cloudwatch_metrics else None
    last_sweep = last_publish = 0.0
    while not stop.is_set():
        try:
            run_once(w)
            if time.monotonic() - last_sweep >= settings.sweep_interval_s:
                sweep(w)
                last_sweep = time.monotonic()
            if cloudwatch is not None and time.monotonic() - last_publish >= settings.metrics_publish_interval_s:
                publish_queue_depth(w, cloudwatch)
                last_publish = time.monotonic()
        except Exception:
            log.warning("watchdog pass failed", exc_info=True)
        stop.wait(settings.watchdog_interval_s)


if __name__ == "__main__":
    main()
