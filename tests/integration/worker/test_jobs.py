"""The same file processed twice, by one worker or by two racing: one set of chunks; a stale claim
writes nothing; failures and timeouts leave no chunks."""

import threading
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import psycopg
import pymongo.errors
import pytest
from redis import Redis
from rq import Queue

from app.fencing import StaleClaim
from app.settings import get_settings
from app.status import ErrorCode, Stage
from app.stores.jobs import PROCESS_FILE
from tests.fixtures.api import upload, wait_final
from tests.fixtures.stack import Stack, rq_worker_argv
from tests.fixtures.worker import run_worker

TEXT = " ".join(f"Paragraph {i} describes the migration of arctic terns along the coast." for i in range(300))


def _chunks(stack: Stack, fid: str) -> list[int]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return [r[0] for r in conn.execute("SELECT ordinal FROM chunks WHERE file_id = %s", (fid,))]


def test_a_duplicate_job_does_nothing(client: httpx.Client, stack: Stack) -> None:
    fid = upload(client, ("terns.txt", TEXT.encode())).json()["files"][0]["file_id"]
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "embedded"
    from worker.jobs import process_file

    assert process_file(fid) == {"file_id": fid, "skipped": True}
    ordinals = _chunks(stack, fid)
    assert len(ordinals) == doc["chunk_count"] == len(set(ordinals)) > 1
    assert client.get(f"/files/{fid}").json()["attempts"] == 1


def test_two_worker_processes_racing_for_the_same_file_embed_it_once(client: httpx.Client, stack: Stack) -> None:
    s = get_settings()
    queue = Queue("race", connection=Redis.from_url(s.valkey_url.get_secret_value()))
    fid = upload(client, ("terns-race.txt", TEXT.encode())).json()["files"][0]["file_id"]
    queue.connection.delete(f"rq:job:{fid}")
    Queue(s.queue_name, connection=queue.connection).remove(fid)
    # the same file, twice on the queue: as after a retried enqueue
    queue.enqueue(PROCESS_FILE, fid, job_id=f"{fid}-a")
    queue.enqueue(PROCESS_FILE, fid, job_id=f"{fid}-b")
    workers = [stack.spawn(f"race-worker-{i}", rq_worker_argv("race")) for i in range(2)]
    for w in workers:
        assert w.popen.wait(180) == 0, w.tail()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "embedded" and doc["attempts"] == 1
    ordinals = _chunks(stack, fid)
    assert len(ordinals) == doc["chunk_count"] == len(set(ordinals))


def test_concurrent_claims_have_one_winner(client: httpx.Client) -> None:
    from worker.resources import resources

    fid = upload(client, ("claim.txt", b"claimed once only")).json()["files"][0]["file_id"]
    s = get_settings()
    Queue(s.queue_name, connection=Redis.from_url(s.valkey_url.get_secret_value())).remove(fid)
    files = resources().files
    wins: list[bool] = []

    def claim() -> None:
        wins.append(files.claim(fid, f"test-{threading.get_ident()}", 60) is not None)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def _drop_job(fid: str) -> None:
    s = get_settings()
    Queue(s.queue_name, connection=Redis.from_url(s.valkey_url.get_secret_value())).remove(fid)


def _queued_without_job(client: httpx.Client, name: str, text: str) -> str:
    """A queued file whose RQ job is gone: the test drives its claims by hand."""
    fid = upload(client, (name, text.encode())).json()["files"][0]["file_id"]
    _drop_job(fid)
    return fid


def _expire_lease(fid: str) -> None:
    from worker.resources import resources

    past = datetime.now(UTC) - timedelta(seconds=5)
    resources().files.col.update_one({"_id": fid}, {"$set": {"lease.expires_at": past}})


def _rows(texts: list[str]) -> tuple[list, np.ndarray]:
    from app.stores.chunks.writer import ChunkRow
    from worker.resources import resources

    rows = [ChunkRow(i, t, 1, 1, [], ["paragraph"]) for i, t in enumerate(texts)]
    return rows, resources().embedder.embed(texts)


def _texts(stack: Stack, fid: str) -> list[str]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return [r[0] for r in conn.execute("SELECT text FROM chunks WHERE file_id = %s ORDER BY ordinal", (fid,))]


def test_a_stale_claim_is_refused_by_every_store(client: httpx.Client, stack: Stack) -> None:
    from worker.resources import resources
    from worker.watchdog import run_once, watch

    r = resources()
    fid = _queued_without_job(client, "fence.txt", "fenced writes")
    stale, doc = r.files.claim(fid, "worker-a", 60)
    _expire_lease(fid)  # worker-a was paused past its lease
    assert run_once(watch())["requeued_lost"] >= 1
    Queue(get_settings().queue_name, connection=Redis.from_url(get_settings().valkey_url.get_secret_value())).remove(
        fid
    )
    live, live_doc = r.files.claim(fid, "worker-b", 60)
    assert (stale.token, live.token) == (1, 2)
    r.chunks.replace(live, live_doc, *_rows(["the live claim's chunk"]))
    assert r.files.finish(live, chunk_count=1)
    # worker-a wakes up: every write it tries is refused
    with pytest.raises(StaleClaim):
        r.chunks.replace(stale, doc, *_rows(["a stale chunk", "another stale chunk"]))
    with pytest.raises(StaleClaim):
        r.chunks.fence_off(stale.file_id, stale.token)
    assert not r.files.set_stage(stale, Stage.INDEX)
    assert not r.files.renew(stale, 60)
    assert not r.files.finish(stale, chunk_count=2)
    assert not r.files.fail(stale, ErrorCode.INTERNAL_ERROR)
    assert _texts(stack, fid) == ["the live claim's chunk"]
    final = client.get(f"/files/{fid}").json()
    assert final["status"] == "embedded" and final["attempts"] == 2 and final["chunk_count"] == 1


def test_a_takeover_removes_what_the_lost_worker_wrote(client: httpx.Client, stack: Stack) -> None:
    from worker.resources import resources
    from worker.watchdog import run_once, watch

    r = resources()
    fid = _queued_without_job(client, "fence-lost.txt", "written then lost")
    for attempt in range(1, get_settings().max_attempts + 1):
        claim, doc = r.files.claim(fid, f"worker-{attempt}", 60)
        r.chunks.replace(claim, doc, *_rows([f"written by attempt {attempt}"]))  # then the worker dies
        _expire_lease(fid)
        done = run_once(watch())
        assert _texts(stack, fid) == []  # taken back: a file that is not embedded has no chunks in search
        Queue(
            get_settings().queue_name, connection=Redis.from_url(get_settings().valkey_url.get_secret_value())
        ).remove(fid)
    assert done["failed_worker_lost"] == 1
    assert client.get(f"/files/{fid}").json()["error"]["code"] == "worker_lost"


def test_a_failure_after_the_chunks_were_written_leaves_none(
    client: httpx.Client, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient error in the last step of the last attempt: `retries_exhausted`, and no chunks in search."""
    from app.stores.files import SyncFileStore
    from worker.resources import resources

    fid = upload(client, ("finish-fails.txt", TEXT.replace("terns", "puffins").encode())).json()["files"][0]["file_id"]
    resources().files.col.update_one({"_id": fid}, {"$set": {"attempts": get_settings().max_attempts - 1}})

    def finish_fails(self: SyncFileStore, claim: object, **fields: object) -> bool:
        raise pymongo.errors.AutoReconnect("mongo-7.internal.example:27017: connection closed")

    monkeypatch.setattr(SyncFileStore, "finish", finish_fails)
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "failed" and doc["error"]["code"] == "retries_exhausted"
    assert doc["error"]["message"] == "MongoDB kept failing; gave up after 3 attempts."  # no host, no driver text
    assert _chunks(stack, fid) == []


def test_a_job_over_its_timeout_fails_with_job_timeout(client: httpx.Client, stack: Stack) -> None:
    fid = _queued_without_job(client, "slow-job.txt", TEXT.replace("terns", "skuas") * 6)
    s = get_settings()
    queue = Queue(s.queue_name, connection=Redis.from_url(s.valkey_url.get_secret_value()))
    queue.enqueue(PROCESS_FILE, fid, job_id=fid, job_timeout=1)  # embedding 1,800 paragraphs takes longer
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "failed" and doc["error"]["code"] == "job_timeout", doc
    assert "longer than 1 s" in doc["error"]["message"] and doc["attempts"] == 1
    assert _chunks(stack, fid) == []
