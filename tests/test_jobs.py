"""The same file processed twice, by one worker or by two racing: one set of chunks."""

import threading

import httpx
import psycopg
from redis import Redis
from rq import Queue

from app.settings import get_settings
from app.stores.jobs import PROCESS_FILE
from tests.helpers import run_worker, upload, wait_final
from tests.stack import Stack, rq_worker_argv

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
    threads = [threading.Thread(target=lambda: wins.append(files.claim(fid) is not None)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
