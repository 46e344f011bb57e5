"""The watchdog: repairs what a crash or a lost queue leaves behind.

`python -m worker.watchdog` runs it in a loop (under supervisord locally, as its
own role in deployments); `run_once` and `sweep` are plain functions the tests
call directly. Each pass:
- a `processing` file whose worker's lease expired (the worker was killed or stopped) goes
  back to `queued` with a new job, or to `failed` (worker_lost) after MAX_ATTEMPTS; either
  way its chunks are fenced off (app/fencing.py), so the old worker, should it wake up,
  writes nothing;
- a `failed` file whose chunks could not be removed when it failed has them removed;
- a `queued` file with no live RQ job behind it (Valkey lost its data) gets one;
- a `saving` file whose lease expired (its request died or stalled) is removed;
- a `deleting` file whose delete was interrupted is finished;
- scratch directories of processes that died (`kill -9`) are removed (app/scratch.py).
Less often, `sweep` removes chunks, fences and stored bytes that no status document owns,
and with CLOUDWATCH_METRICS=true the queue's depth goes to CloudWatch (`QueueDepth`),
which the workers' Auto Scaling group scales on.
Every action is a compare-and-set on the status document (a takeover only on an expired
lease), so two watchdogs, or a watchdog racing a worker, do no harm.
"""

import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pymongo import MongoClient

from app import scratch
from app.fencing import StaleClaim
from app.observability.logs import setup_logging
from app.settings import Settings, get_settings
from app.status import ErrorCode, FileStatus, error_doc
from app.stores.blobs import DiskBlobs, S3Blobs, make_blob_store
from app.stores.chunks.schema import ensure_schema
from app.stores.chunks.writer import ChunkIndex
from app.stores.files import SyncFileStore, ago
from app.stores.jobs import JobQueue

log = logging.getLogger("worker.watchdog")
DELETE_GRACE_S = 60  # a delete the API is still doing is left to the API
FENCE_KEEP_S = 24 * 3600  # how long a deleted file's fence is kept
LOST = error_doc(ErrorCode.WORKER_LOST, "The worker processing the file stopped responding; the file was queued again.")


@dataclass
class Watch:
    settings: Settings
    files: SyncFileStore
    jobs: JobQueue
    blobs: DiskBlobs | S3Blobs
    chunks: ChunkIndex


@lru_cache
def watch() -> Watch:
    settings = get_settings()
    mongo = MongoClient(settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000, tz_aware=True)
    return Watch(
        settings,
        SyncFileStore(mongo, settings.mongo_db),
        JobQueue(settings),
        make_blob_store(settings),
        ChunkIndex(settings.database_url.get_secret_value()),
    )


def _fence_off(w: Watch, doc: dict[str, Any]) -> bool:
    """Fence the file's chunks off for its next claim (and remove them): the old worker writes nothing.

    Best effort: if PostgreSQL fails here, the next claim raises the fence itself with its first write.
    """
    try:
        w.chunks.fence_off(doc["_id"], int(doc.get("attempts", 0)) + 1)
    except StaleClaim:
        pass  # already fenced higher: deleted, or claimed again
    except Exception:  # the takeover stands; the job must still be enqueued
        log.warning("file %s: chunks not fenced off", doc["_id"], exc_info=True)
        return False
    return True


def _take_back_lost(w: Watch, done: Counter) -> None:
    s = w.settings
    for doc in w.files.expired_processing(legacy_cutoff=ago(s.heartbeat_timeout_s)):
        fid = doc["_id"]
        if doc.get("attempts", 0) >= s.max_attempts:
            if w.files.fail_lost(doc):
                if _fence_off(w, doc):
                    w.files.mark_purged(fid)  # else `unpurged_failed` tries again next pass
                done["failed_worker_lost"] += 1
        elif w.files.requeue_lost(doc, last_error=LOST):
            _fence_off(w, doc)
            w.jobs.enqueue_file(fid, doc.get("size") or 0)
            done["requeued_lost"] += 1
    for doc in w.files.unpurged_failed():
        if _fence_off(w, doc):
            w.files.mark_purged(doc["_id"])
            done["failed_chunks_removed"] += 1


def run_once(w: Watch) -> Counter:
    s = w.settings
    done: Counter = Counter()
    _take_back_lost(w, done)

    live = w.jobs.live_job_ids()
    for doc in w.files.in_state_since(FileStatus.QUEUED, "queued_at", ago(s.queued_grace_s)):
        if doc["_id"] not in live:
            w.jobs.enqueue_file(doc["_id"], doc.get("size") or 0)
            done["reenqueued"] += 1

    for doc in w.files.expired_saving(legacy_cutoff=ago(s.saving_timeout_s)):
        if w.files.remove_expired_saving(doc):  # only if its request has not renewed meanwhile
            w.blobs.delete_file_sync(doc["_id"])
            done["abandoned_uploads_removed"] += 1

    for doc in w.files.in_state_since(FileStatus.DELETING, "updated_at", ago(DELETE_GRACE_S)):
        _delete_everything(w, doc["_id"])
        done["deletes_finished"] += 1

    if swept := scratch.sweep(scratch.root(s)):
        done["scratch_dirs_removed"] += swept
    if done:
        log.info("watchdog pass: %s", dict(done))
    return done


def _delete_everything(w: Watch, file_id: str) -> None:
    w.chunks.delete_file(file_id)
    w.blobs.delete_file_sync(file_id)
    w.files.delete(file_id)


def _orphans(w: Watch, file_ids: list[str]) -> list[str]:
    existing: set[str] = set()
    for start in range(0, len(file_ids), 1000):
        existing |= w.files.existing_ids(file_ids[start : start + 1000])
    return [f for f in file_ids if f not in existing]


def sweep(w: Watch) -> Counter:
    """Remove chunks, fences and stored bytes with no status document.

    Listing comes before the look-up, and a document is always written before its
    bytes and chunks, so something listed without a document was truly orphaned. A
    fence outlives its file by FENCE_KEEP_S, so a worker paused that long still
    cannot write.
    """
    done: Counter = Counter()
    for fid in _orphans(w, w.chunks.file_ids()):
        w.chunks.delete_file(fid)
        done["orphan_chunk_files"] += 1
    if dropped := w.chunks.drop_fences(_orphans(w, w.chunks.fenced_file_ids(older_than_s=FENCE_KEEP_S))):
        done["orphan_fences"] += dropped
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
