"""Faults injected into real processes: workers killed or stopped mid-file, Valkey
losing its data, MongoDB and PostgreSQL going away. Nothing lost, nothing stuck,
nothing duplicated.

This module runs its own servers, API, workers and watchdog (it kills them), with
short heartbeat and watchdog intervals so recoveries take seconds.
"""

import concurrent.futures
import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from rq.job import Job, JobStatus

from tests.fixtures.api import upload
from tests.fixtures.stack import Proc, Stack, rq_worker_argv, stack_dir, start_api, start_servers

FAST = {
    "HEARTBEAT_INTERVAL_S": "0.5",
    "HEARTBEAT_TIMEOUT_S": "4",
    "WATCHDOG_INTERVAL_S": "0.5",
    "QUEUED_GRACE_S": "2",
    "RETRY_INTERVALS_S": "[1, 2, 4]",
    "MAX_ATTEMPTS": "3",
    "MONGO_DB": "docproc_faults",
    "DEDUP": "allow",
    "SAVING_TIMEOUT_S": "2",  # an upload's lease: renewed every 0.5 s while bytes arrive
}


LONG_TEXT = "\n\n".join(
    f"Section {i}. The survey vessel Kestrel mapped the seabed of fjord {i} with multibeam sonar, "
    f"logging depth, salinity and temperature every {i % 7 + 1} minutes along transect {i * 3}."
    for i in range(1500)
)


class Faults:
    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url
        self.client = stack.client(url)
        self.workers: list[Proc] = []

    def worker(self) -> Proc:
        argv = rq_worker_argv("ingest", burst=False, valkey_url=self.stack.env["VALKEY_URL"])
        proc = self.stack.spawn(f"worker-{len(self.workers)}", argv, env=FAST)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop(timeout=60)
        self.workers.clear()

    def status(self, fid: str) -> dict:
        return self.client.get(f"/files/{fid}").json()

    def wait(self, fids: list[str], statuses: set[str], timeout: float = 180) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            docs = {}
            for fid in fids:
                try:
                    docs[fid] = self.status(fid)
                except httpx.HTTPError:
                    docs[fid] = {}
            if all(d.get("status") in statuses for d in docs.values()):
                return docs
            if time.monotonic() > deadline:
                stuck = {f: d.get("status") for f, d in docs.items() if d.get("status") not in statuses}
                tails = "\n".join(f"--- {w.name}\n{w.tail(30)}" for w in self.workers)
                raise TimeoutError(f"not {statuses} after {timeout}s: {stuck}\n{tails}")
            time.sleep(0.3)

    def chunk_ordinals(self, fid: str) -> list[int]:
        with psycopg.connect(self.stack.env["DATABASE_URL"]) as conn:
            return [r[0] for r in conn.execute("SELECT ordinal FROM chunks WHERE file_id = %s", (fid,))]

    def assert_indexed_once(self, fid: str) -> dict:
        doc = self.status(fid)
        ordinals = self.chunk_ordinals(fid)
        assert doc["status"] == "embedded", doc
        assert len(ordinals) == len(set(ordinals)) == doc["chunk_count"] > 0
        return doc


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    stack = start_servers(stack_dir("faults"))
    stack.env.update(FAST)
    stack.spawn("watchdog", [sys.executable, "-m", "worker.watchdog"])
    _, url = start_api(stack)
    f = Faults(stack, url)
    yield f
    f.client.close()
    stack.stop_all()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture
def clean(faults: Faults) -> Iterator[Faults]:
    yield faults
    faults.stop_workers()


def _wait_processing(f: Faults, fid: str, stage: str = "embed", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        doc = f.status(fid)
        if doc["status"] == "processing" and doc.get("stage") == stage:
            return
        assert doc["status"] in ("queued", "processing"), doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.1)


def test_kill_9_worker_mid_file_still_embeds_once(clean: Faults) -> None:
    f = clean
    fid = upload(f.client, ("kill9.txt", LONG_TEXT.encode())).json()["files"][0]["file_id"]
    victim = f.worker()
    _wait_processing(f, fid)
    os.killpg(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait()
    t_killed = time.monotonic()
    f.worker()  # a replacement, as supervisord or the Auto Scaling group would start
    f.wait([fid], {"embedded", "failed"})
    doc = f.assert_indexed_once(fid)
    assert doc["attempts"] == 2 and doc["last_error"]["code"] == "worker_lost"
    print(f"kill -9 recovery: {time.monotonic() - t_killed:.1f}s to embedded")


def test_sigterm_finishes_the_current_file(clean: Faults) -> None:
    f = clean
    fid = upload(f.client, ("sigterm.txt", LONG_TEXT.replace("Kestrel", "Fulmar").encode())).json()["files"][0][
        "file_id"
    ]
    worker = f.worker()
    _wait_processing(f, fid)
    worker.popen.send_signal(signal.SIGTERM)  # warm shutdown: finish the file, then exit
    assert worker.popen.wait(120) == 0
    doc = f.assert_indexed_once(fid)
    assert doc["attempts"] == 1


def test_flushed_valkey_loses_no_queued_file(clean: Faults) -> None:
    f = clean
    fids = [
        upload(f.client, (f"flush-{i}.txt", f"Flush test {i}: the tram depot logbook {uuid.uuid4()}".encode())).json()[
            "files"
        ][0]["file_id"]
        for i in range(5)
    ]
    redis.Redis.from_url(f.stack.env["VALKEY_URL"]).flushall()
    f.worker()
    f.wait(fids, {"embedded"}, timeout=120)
    for fid in fids:
        f.assert_indexed_once(fid)


def test_restarted_valkey_keeps_the_queue(clean: Faults) -> None:
    f = clean
    fids = [
        upload(f.client, (f"aof-{i}.txt", f"AOF test {i}: harbour ferry timetable {uuid.uuid4()}".encode())).json()[
            "files"
        ][0]["file_id"]
        for i in range(3)
    ]
    time.sleep(1.2)  # appendfsync everysec
    f.stack.stop_server("valkey")
    f.stack.restart_server("valkey")
    f.worker()
    f.wait(fids, {"embedded"}, timeout=120)


def test_mongodb_outage_gives_fast_503s_then_full_recovery(clean: Faults) -> None:
    f = clean
    f.worker()
    before = upload(f.client, ("before-outage.txt", b"Before the outage: the bakery opens at six.")).json()
    f.stack.stop_server("mongo")
    try:
        codes, slowest = [], 0.0
        for i in range(5):
            t0 = time.monotonic()
            r = upload(f.client, (f"during-{i}.txt", f"During the outage {i}".encode()))
            slowest = max(slowest, time.monotonic() - t0)
            codes.append(r.status_code)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert r.json()["detail"]["code"] == "dependency_unavailable"
        t0 = time.monotonic()
        assert f.client.get("/files").status_code == 503
        slowest = max(slowest, time.monotonic() - t0)
        assert slowest < 2.0, f"a request took {slowest:.2f}s during the outage"
    finally:
        f.stack.restart_server("mongo")
    deadline = time.monotonic() + 30
    while True:  # the API reconnects by itself
        r = upload(f.client, ("after-outage.txt", b"After the outage: the bakery sells rye loaves."))
        if r.status_code == 202:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)
    fids = [before["files"][0]["file_id"], r.json()["files"][0]["file_id"]]
    f.wait(fids, {"embedded"}, timeout=120)
    everything = f.client.get("/files", params={"limit": 500}).json()["items"]
    stuck = [d for d in everything if d["status"] in ("saving", "deleting")]
    assert stuck == [] and not any(d["filename"].startswith("during-") for d in everything)


def test_postgres_outage_mid_file_is_retried(clean: Faults) -> None:
    f = clean
    f.worker()
    warm = upload(f.client, ("pg-warm.txt", f"Warm-up {uuid.uuid4()}".encode())).json()["files"][0]["file_id"]
    f.wait([warm], {"embedded"}, timeout=120)  # the worker is up, its model loaded
    f.stack.stop_server("postgres")
    try:
        body = f"The lighthouse at Sorn was automated in 1987. {uuid.uuid4()}".encode()
        fid = upload(f.client, ("pg-outage.txt", body)).json()["files"][0]["file_id"]
        deadline = time.monotonic() + 60
        while f.status(fid).get("last_error") is None:  # the first attempt hit the outage and handed back
            assert time.monotonic() < deadline, f.status(fid)
            time.sleep(0.2)
    finally:
        f.stack.restart_server("postgres")
    f.wait([fid], {"embedded", "failed"}, timeout=120)
    doc = f.assert_indexed_once(fid)
    assert doc["attempts"] >= 2
    # the tenant is told which server, never its address or the driver's words
    assert doc["last_error"] == {
        "code": "dependency_unavailable",
        "message": "PostgreSQL was unavailable; the file will be tried again.",
    }


def test_delete_during_processing_leaves_nothing(clean: Faults) -> None:
    f = clean
    fid = upload(f.client, ("delete-mid.txt", LONG_TEXT.replace("Kestrel", "Petrel").encode())).json()["files"][0][
        "file_id"
    ]
    f.worker()
    _wait_processing(f, fid)
    assert f.client.delete(f"/files/{fid}").status_code == 204
    assert f.client.get(f"/files/{fid}").status_code == 404
    job = Job.fetch(fid, connection=redis.Redis.from_url(f.stack.env["VALKEY_URL"]))
    deadline = time.monotonic() + 60
    while job.get_status(refresh=True) == JobStatus.STARTED:  # it notices at its next checkpoint and stops
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job.get_status() == JobStatus.FINISHED and job.return_value()["skipped"] is True
    assert f.chunk_ordinals(fid) == []
    assert not (Path(f.stack.env["DATA_DIR"]) / "uploads" / fid).exists()


def test_200_uploads_from_16_clients_with_2_workers(clean: Faults) -> None:
    f = clean
    f.worker()
    f.worker()

    def one(i: int) -> str:
        with f.stack.client(f.url, timeout=60) as c:
            body = f"Load test file {i}: inventory of shelf {i} in the archive, box {uuid.uuid4()}.".encode()
            r = upload(c, (f"load-{i}.txt", body))
            assert r.status_code == 202, r.text
            return r.json()["files"][0]["file_id"]

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        fids = list(pool.map(one, range(200)))
    assert len(set(fids)) == 200
    f.wait(fids, {"embedded", "failed"}, timeout=300)
    for fid in fids:
        f.assert_indexed_once(fid)
    print(f"200 files via 16 clients, 2 workers: {time.monotonic() - t0:.1f}s to all embedded")


BOUNDARY = "leaseboundary"


def _part(name: str, body: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
    return head.encode() + b"Content-Type: text/plain\r\n\r\n" + body + b"\r\n"


def _slow_body(
    parts: list[bytes], pieces: int, pause_s: float, stall_after: int = -1, stall_s: float = 0
) -> Iterator[bytes]:
    """A multipart body sent in `pieces` pieces `pause_s` apart (and one long stall), as a slow link would."""
    data = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    step = len(data) // pieces + 1
    for i, start in enumerate(range(0, len(data), step)):
        yield data[start : start + step]
        time.sleep(stall_s if i == stall_after else pause_s)


def _post_slow(client: httpx.Client, body: Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return client.post("/upload", content=body, headers={**content_type, **(headers or {})}, timeout=120)


def _blob_dirs(f: Faults) -> set[str]:
    uploads = Path(f.stack.env["DATA_DIR"]) / "uploads"
    return {p.name for p in uploads.iterdir()} if uploads.exists() else set()


def test_an_upload_slower_than_the_saving_timeout_ends_embedded(clean: Faults) -> None:
    f = clean
    f.worker()
    text = f"The slow link from the lighthouse carried its log {uuid.uuid4()}. ".encode() * 400
    t0 = time.monotonic()
    r = _post_slow(f.client, _slow_body([_part("slow.txt", text)], pieces=30, pause_s=0.2))  # 6 s > 2 s lease
    assert time.monotonic() - t0 > 3 * float(FAST["SAVING_TIMEOUT_S"])
    assert r.status_code == 202, r.text
    fid = r.json()["files"][0]["file_id"]
    f.wait([fid], {"embedded", "failed"}, timeout=120)
    f.assert_indexed_once(fid)


def test_a_stalled_upload_is_removed_and_never_answered_202(clean: Faults) -> None:
    f = clean
    tenant_files = f.client.get("/files", params={"limit": 500}).json()["total"]
    dirs = _blob_dirs(f)
    body = _slow_body([_part("stall.txt", b"x" * 20000)], pieces=4, pause_s=0.1, stall_after=0, stall_s=5)
    r = _post_slow(f.client, body)  # stalls 5 s after the first piece: the lease (2 s) expires, the watchdog acts
    assert r.status_code == 408 and r.json()["detail"]["code"] == "upload_expired", r.text
    assert f.client.get("/files", params={"limit": 500}).json()["total"] == tenant_files
    assert _blob_dirs(f) == dirs  # no bytes, no .part file


def _stop_and_wait_lease_expiry(f: Faults, fid: str, victim: Proc) -> None:
    os.killpg(victim.popen.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while f.status(fid)["status"] == "processing" and f.status(fid)["attempts"] == 1:
        assert time.monotonic() < deadline, f.status(fid)  # the watchdog takes it back once the lease expired
        time.sleep(0.2)


def test_a_stopped_worker_that_wakes_up_late_overwrites_nothing(clean: Faults) -> None:
    f = clean
    fid = upload(f.client, ("sigstop.txt", LONG_TEXT.replace("Kestrel", "Skua").encode())).json()["files"][0]["file_id"]
    first = f.worker()
    _wait_processing(f, fid)
    _stop_and_wait_lease_expiry(f, fid, first)  # SIGSTOP: a long GC, a partition
    second = f.worker()
    f.wait([fid], {"embedded", "failed"})
    live = f.assert_indexed_once(fid)
    assert live["attempts"] == 2
    chunks_before = f.chunk_ordinals(fid)
    os.killpg(first.popen.pid, signal.SIGCONT)  # the first wakes up mid-file, its claim (attempt 1) stale
    deadline = time.monotonic() + 60
    while "taken back while processing (claim 1)" not in first.tail(200):
        assert time.monotonic() < deadline, first.tail()
        assert first.popen.poll() is None
        time.sleep(0.3)
    time.sleep(1)
    after = f.assert_indexed_once(fid)  # exactly one set of chunks; the status is the live claim's
    assert after["attempts"] == 2 and after["finished_at"] == live["finished_at"]
    assert sorted(f.chunk_ordinals(fid)) == sorted(chunks_before)
    second.stop()


def test_api_killed_mid_request_frees_its_idempotency_key_after_the_lease(clean: Faults) -> None:
    f = clean
    f.worker()
    doomed, doomed_url = start_api(f.stack, "api-doomed")
    key = {"Idempotency-Key": f"kill-{uuid.uuid4()}"}
    parts = [_part("idem-kill.txt", f"The ferry to Inis Mor leaves at nine {uuid.uuid4()}.".encode() * 50)]
    sent = concurrent.futures.Future()

    def slow_then_killed() -> None:
        def body() -> Iterator[bytes]:
            for i, piece in enumerate(_slow_body(parts, pieces=10, pause_s=0.3)):
                if i == 2:
                    sent.set_result(True)
                yield piece

        with f.stack.client(doomed_url) as c, contextlib.suppress(httpx.HTTPError):  # the API dies under it
            _post_slow(c, body(), key)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow_then_killed)
        sent.result(timeout=30)
        os.killpg(doomed.popen.pid, signal.SIGKILL)  # mid-request: no release, no rollback
        pending.result(timeout=60)
    first = _post_slow(f.client, _slow_body(parts, pieces=1, pause_s=0), key)
    assert first.status_code == 409 and first.json()["detail"]["code"] == "idempotency_key_in_use"
    time.sleep(float(FAST["SAVING_TIMEOUT_S"]) + 0.5)  # the dead request's lease expires
    retry = _post_slow(f.client, _slow_body(parts, pieces=1, pause_s=0), key)
    assert retry.status_code == 202, retry.text
    fid = retry.json()["files"][0]["file_id"]
    replay = _post_slow(f.client, _slow_body(parts, pieces=3, pause_s=0), key)  # same parts, other framing
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == retry.json()
    other = _post_slow(f.client, _slow_body([_part("idem-kill.txt", b"other bytes")], pieces=1, pause_s=0), key)
    assert other.status_code == 422 and other.json()["detail"]["code"] == "idempotency_key_reused"
    f.wait([fid], {"embedded"}, timeout=120)
    assert not any(d["status"] == "saving" for d in f.client.get("/files", params={"limit": 500}).json()["items"])
