"""Observability through the real stack: /health, /ready, /system-metrics, Prometheus metrics
from the API (gunicorn, 2 workers, multiprocess mode) and from an RQ worker's own port,
JSON log lines with request ids carried into the job's lines, and GELF to a listener.

This module runs its own servers, API and worker: it stops the servers for /ready.
"""

import json
import re
import shutil
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from devstack import servers
from tests.fixtures.api import wait_final
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import METRICS_TOKEN, Proc, Stack, rq_worker_argv, stack_dir, start_servers

MONGO_DB = "docproc_obs"


METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # Prometheus's credentials for GET /metrics


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sample's value, or the sum over the samples whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: dict) -> set[str]:
    return {n for n, _ in samples}


@dataclass
class GelfListener:
    sock: socket.socket
    messages: list[dict] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except OSError:
                return
            if data[:2] == b"\x1e\x0f":  # a chunked (long) message: not needed here
                continue
            try:
                self.messages.append(json.loads(zlib.decompress(data)))
            except (zlib.error, ValueError):
                self.messages.append({"undecodable": data[:100].hex()})


@dataclass
class Obs:
    stack: Stack
    url: str
    api: Proc
    worker: Proc
    worker_url: str
    prom_dir: Path
    gelf: GelfListener
    client: httpx.Client

    def api_metrics(self) -> dict:
        r = self.client.get("/metrics", headers=METRICS_AUTH)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        return parse_metrics(r.text)

    def worker_metrics(self) -> dict:
        r = httpx.get(f"{self.worker_url}/metrics", timeout=10)
        assert r.status_code == 200
        return parse_metrics(r.text)


def _wait_http(url: str, proc: Proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{proc.name} not up:\n{proc.tail()}")


@pytest.fixture(scope="module")
def obs() -> Iterator[Obs]:
    stack = start_servers(stack_dir("obs"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    gelf = GelfListener(sock)
    threading.Thread(target=gelf.run, daemon=True).start()
    common = {
        "MONGO_DB": MONGO_DB,
        "LOG_FORMAT": "json",
        "GELF_HOST": "127.0.0.1",
        "GELF_PORT": str(gelf.port),
        "GELF_PROTOCOL": "udp",
        "METRICS_CACHE_S": "0",
        "DEDUP": "allow",
    }
    prom_dir = stack.root / "prometheus"
    port = servers.free_port()
    api = stack.spawn(
        "api",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "app.main:create_app()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "uvicorn.workers.UvicornWorker",
            "--config",
            "python:app.gunicorn_conf",
        ],
        env={**common, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)},
    )
    url = f"http://127.0.0.1:{port}"
    metrics_port = servers.free_port()
    worker = stack.spawn(
        "worker",
        rq_worker_argv("ingest", burst=False, valkey_url=stack.env["VALKEY_URL"]),
        env={**common, "WORKER_METRICS_PORT": str(metrics_port)},
    )
    try:
        _wait_http(f"{url}/health", api)
        _wait_http(f"http://127.0.0.1:{metrics_port}/metrics", worker)
        with stack.client(url, mongo_db=MONGO_DB) as client:
            yield Obs(stack, url, api, worker, f"http://127.0.0.1:{metrics_port}", prom_dir, gelf, client)
    finally:
        for proc in (worker, api):
            proc.stop(timeout=30)
        stack.stop_all()
        sock.close()
        shutil.rmtree(stack.root, ignore_errors=True)


def json_lines(proc: Proc) -> list[dict]:
    """Every line the process wrote, each parsed as JSON (a line that is not JSON fails the test)."""
    lines = [line for line in proc.log.read_text().splitlines() if line.strip()]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{proc.name} wrote a line that is not JSON: {line!r}")
    return out


def wait_for(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_health_and_request_id(obs: Obs) -> None:
    r = obs.client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # generated
    assert obs.client.get("/health", headers={"X-Request-ID": "lb-7f3a:42"}).headers["x-request-id"] == "lb-7f3a:42"
    for bad in ("x" * 129, "two words", "evil\u00e9"):
        echoed = obs.client.get("/health", headers={"X-Request-ID": bad.encode("utf-8")}).headers["x-request-id"]
        assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert obs.client.get("/files/not-a-uuid").headers["x-request-id"]  # on errors too


def test_system_metrics(obs: Obs) -> None:
    body = obs.client.get("/system-metrics").json()
    assert body["cpu"]["count"] >= 1 and 0 <= body["cpu"]["percent"] <= 100
    assert len(body["cpu"]["load_average"]) == 3
    memory = body["memory"]
    assert 0 < memory["available_bytes"] <= memory["total_bytes"] and 0 <= memory["percent"] <= 100
    disk = body["disk"]
    assert disk["used_bytes"] + disk["free_bytes"] <= disk["total_bytes"] * 1.01 and disk["total_bytes"] > 0
    assert Path(disk["path"]).exists()


def _scanned_pdf() -> bytes:
    from tests.fixtures.documents import make_scanned_pdf

    return make_scanned_pdf([None, "A typed cover note about harbour inspections and the spring tides."], tag="obs")


@pytest.fixture(scope="module")
def processed(obs: Obs) -> dict:
    """Three files embedded (a text file, a 3-page PDF, a PDF with one scanned page) and a broken PDF
    failed, uploaded in one request with a known X-Request-ID; the metrics before and after."""
    api_before, worker_before = obs.api_metrics(), obs.worker_metrics()
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    text = b"The lighthouse on Skarv island was automated in 1987. " * 40
    pdf = make_pdf([f"Page {i}: the ferry timetable changes in winter. " * 12 for i in range(1, 4)])
    broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage" * 3
    files = [
        ("files", ("notes.txt", text, "text/plain")),
        ("files", ("timetable.pdf", pdf, "application/pdf")),
        ("files", ("scan.pdf", _scanned_pdf(), "application/pdf")),
        ("files", ("broken.pdf", broken, "application/pdf")),
    ]
    r = obs.client.post("/upload", files=files, headers={"X-Request-ID": request_id})
    assert r.status_code == 202, r.text
    assert r.headers["x-request-id"] == request_id
    ids = [f["file_id"] for f in r.json()["files"]]
    docs = wait_final(obs.client, ids, timeout=240)
    statuses = [docs[i]["status"] for i in ids]
    assert statuses == ["embedded", "embedded", "embedded", "failed"], docs
    assert docs[ids[3]]["error"]["code"] == "pdf_corrupt"
    with MongoClient(obs.stack.env["MONGO_URL"]) as mongo:
        raw = {d["_id"]: d for d in mongo[MONGO_DB]["files"].find({"_id": {"$in": ids}})}
    # the job's outcome is counted just after the status is written: wait for the worker to get there
    wait_for(
        lambda: (
            value(obs.worker_metrics(), "docproc_files_processed_total")
            - value(worker_before, "docproc_files_processed_total")
            >= 4
        ),
        "the worker's counters",
    )
    body_bytes = int(r.request.headers["content-length"])
    return {
        "request_id": request_id,
        "ids": ids,
        "docs": docs,
        "raw": raw,
        "body_bytes": body_bytes,
        "api_before": api_before,
        "worker_before": worker_before,
        "api_after": obs.api_metrics(),
        "worker_after": obs.worker_metrics(),
    }


def test_worker_metrics_count_what_happened(processed: dict) -> None:
    before, after = processed["worker_before"], processed["worker_after"]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    embedded = [processed["docs"][i] for i in processed["ids"][:3]]
    scan = processed["raw"][processed["ids"][2]]
    assert delta("docproc_files_processed_total", outcome="embedded") == 3
    assert delta("docproc_files_processed_total", outcome="failed") == 1
    assert delta("docproc_files_processed_total") == 4  # nothing retried, skipped or cancelled
    assert delta("docproc_failures_total", code="pdf_corrupt") == 1
    assert delta("docproc_failures_total") == 1
    assert delta("docproc_pages_total") == sum(d["page_count"] or 0 for d in embedded) == 3 + 2
    assert delta("docproc_ocr_pages_total") == scan["parse_pages_ocr"] == 1
    chunks = sum(d["chunk_count"] for d in embedded)
    assert chunks >= 3 and delta("docproc_chunks_total") == chunks
    tokens = delta("docproc_embedded_tokens_total")
    assert chunks * 10 < tokens <= chunks * 256  # every chunk has text, none exceeds the model's 256
    # each file entered download and parse once; the three embedded ones every later stage; one page OCR'd
    stage_counts = {
        s: delta("docproc_stage_seconds_count", stage=s)
        for s in ("download", "parse", "ocr", "chunk", "embed", "index")
    }
    assert stage_counts == {"download": 4, "parse": 4, "ocr": 1, "chunk": 3, "embed": 3, "index": 3}
    assert delta("docproc_stage_seconds_sum", stage="ocr") > 0.2  # tesseract on a 300 dpi page
    assert delta("docproc_stage_seconds_sum", stage="embed") > 0
    assert delta("docproc_stage_seconds_bucket", stage="parse", le="+Inf") == 4
    assert delta("docproc_job_seconds_count", outcome="embedded") == 3
    assert "process_resident_memory_bytes" in names(after)  # the worker's process metrics too


def test_api_metrics(obs: Obs, processed: dict) -> None:
    before, after = processed["api_before"], processed["api_after"]
    upload_requests = value(after, "docproc_http_requests_total", method="POST", route="/upload", status="202")
    assert upload_requests - value(before, "docproc_http_requests_total", route="/upload") == 1
    uploaded = value(after, "docproc_upload_bytes_total") - value(before, "docproc_upload_bytes_total")
    assert uploaded == processed["body_bytes"]
    assert value(after, "docproc_http_request_seconds_count", method="POST", route="/upload") >= 1
    # route templates, never raw paths (ids would make the series unbounded)
    routes = {dict(ls).get("route") for n, ls in after if n == "docproc_http_requests_total"}
    assert "/files/{file_id}" in routes and not any(r and re.search(r"[0-9a-f]{8}-", r) for r in routes)
    assert value(after, "docproc_http_requests_total", route="/files/{file_id}", status="200") >= 4
    # gauges from MongoDB and RQ: this module's database holds exactly these files
    assert value(after, "docproc_files", status="embedded") == 3
    assert value(after, "docproc_files", status="failed") == 1
    assert value(after, "docproc_files", status="queued") == value(after, "docproc_files", status="processing") == 0
    assert value(after, "docproc_failed_files", code="pdf_corrupt") == 1
    assert value(after, "docproc_queue_depth", queue="ingest") == 0
    assert value(after, "docproc_workers", queue="ingest") == 1
    assert value(after, "docproc_failed_jobs", queue="ingest") == 0
    assert value(after, "docproc_metrics_source_up", source="mongodb") == 1
    assert value(after, "docproc_metrics_source_up", source="valkey") == 1
    # the API does not export the workers' series (they are scraped from each worker)
    assert "docproc_files_processed_total" not in names(after)


def test_queue_depth_counts_waiting_jobs(obs: Obs) -> None:
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(obs.stack.env["VALKEY_URL"])
    queue = Queue("obs-probe", connection=conn)  # no worker listens here
    for _ in range(3):
        queue.enqueue("os.getcwd")
    try:
        samples = obs.api_metrics()
        assert value(samples, "docproc_queue_depth", queue="obs-probe") == 3
        assert value(samples, "docproc_workers", queue="obs-probe") == 0
    finally:
        queue.empty()
        queue.delete()


def test_api_metrics_add_up_every_gunicorn_worker(obs: Obs) -> None:
    """Multiprocess mode: requests served by either of the 2 gunicorn workers all show in /metrics."""
    from prometheus_client.mmap_dict import MmapedDict

    def health_counts_by_pid() -> dict[str, float]:
        counts = {}
        for path in obs.prom_dir.glob("counter_*.db"):
            for key, val, *_ in MmapedDict.read_all_values_from_file(str(path)):
                _, sample, labels, _ = json.loads(key)
                if sample == "docproc_http_requests_total" and labels.get("route") == "/health":
                    counts[path.stem] = counts.get(path.stem, 0) + val
        return counts

    before = value(obs.api_metrics(), "docproc_http_requests_total", route="/health")
    sent = 0

    def one(_: int) -> int:
        # a new connection each time, so the two workers take turns accepting
        return httpx.get(f"{obs.url}/health", headers={"Connection": "close"}, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        while sent < 400:
            assert set(pool.map(one, range(40))) == {200}
            sent += 40
            if sent >= 80 and len([c for c in health_counts_by_pid().values() if c]) >= 2:
                break
    after = value(obs.api_metrics(), "docproc_http_requests_total", route="/health")
    assert after - before == sent
    per_process = health_counts_by_pid()
    assert len([c for c in per_process.values() if c]) == 2, per_process  # both workers served some
    assert sum(per_process.values()) == after


def test_log_lines_are_json_with_request_and_job_fields(obs: Obs, processed: dict) -> None:
    request_id, ids = processed["request_id"], processed["ids"]
    api_lines = json_lines(obs.api)
    for line in api_lines:
        assert {"time", "level", "logger", "message", "service"} <= set(line) and line["service"] == "api"
    requests = [line for line in api_lines if line.get("event") == "request"]
    upload = next(line for line in requests if line.get("request_id") == request_id)
    assert upload["method"] == "POST" and upload["route"] == "/upload" and upload["path"] == "/upload"
    assert upload["status"] == 202 and upload["file_ids"] == ids
    assert isinstance(upload["response_time_ms"], float | int) and upload["response_time_ms"] > 0
    assert upload["client"] == "127.0.0.1" and upload["bytes_in"] == processed["body_bytes"]
    status_line = next(r for r in requests if r["route"] == "/files/{file_id}" and r["file_ids"] == [ids[0]])
    assert status_line["path"] == f"/files/{ids[0]}" and status_line["status"] == 200
    assert re.fullmatch(r"[0-9a-f]{32}", status_line["request_id"])

    worker_lines = json_lines(obs.worker)
    assert all(line["service"] == "worker" for line in worker_lines)
    stages = [line for line in worker_lines if line.get("event") == "stage" and line.get("file_id") in ids]
    assert stages and all(line["request_id"] == request_id for line in stages)  # carried from the upload
    for line in stages:
        assert line["stage"] in {"download", "parse", "ocr", "chunk", "embed", "index"}
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    by_file = {fid: {s["stage"]: s for s in stages if s["file_id"] == fid} for fid in ids}
    assert set(by_file[ids[0]]) == {"download", "parse", "chunk", "embed", "index"}
    assert all(s["outcome"] == "ok" for s in by_file[ids[0]].values())
    assert "ocr" in by_file[ids[2]]
    assert by_file[ids[3]]["parse"]["outcome"] == "failed" and by_file[ids[3]]["parse"]["error"] == "pdf_corrupt"
    assert by_file[ids[3]]["download"]["outcome"] == "ok" and "embed" not in by_file[ids[3]]
    jobs = {line["file_id"]: line for line in worker_lines if line.get("event") == "job" and line.get("file_id") in ids}
    assert jobs[ids[0]]["outcome"] == "embedded" and jobs[ids[0]]["chunks"] == processed["docs"][ids[0]]["chunk_count"]
    assert jobs[ids[3]]["outcome"] == "failed" and jobs[ids[3]]["code"] == "pdf_corrupt"
    assert all(j["request_id"] == request_id for j in jobs.values())
    # RQ's own lines come through the same JSON handler
    assert any(line["logger"].startswith("rq.") for line in worker_lines)


def test_gelf_receives_api_and_worker_records(obs: Obs, processed: dict) -> None:
    request_id = processed["request_id"]

    def found() -> tuple[dict, dict] | None:
        msgs = [m for m in obs.gelf.messages if m.get("_request_id") == request_id]
        api = next((m for m in msgs if m.get("_event") == "request"), None)
        stage = next((m for m in msgs if m.get("_event") == "stage"), None)
        return (api, stage) if api and stage else None

    api, stage = wait_for(found, "GELF messages", timeout=10)
    assert api["version"] == "1.1" and api["short_message"].startswith("POST /upload 202")
    assert api["_route"] == "/upload" and api["_status"] == 202 and api["_service"] == "api"
    assert json.loads(api["_file_ids"]) == processed["ids"]
    assert api["level"] == 6 and api["host"] and isinstance(api["timestamp"], float)
    assert stage["_service"] == "worker" and stage["_file_id"] in processed["ids"]
    assert not any("undecodable" in m for m in obs.gelf.messages)


def test_ready_when_everything_answers(obs: Obs) -> None:
    r = obs.client.get("/ready", headers=METRICS_AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"mongodb", "valkey", "postgresql", "storage"}
    for check in body["checks"].values():
        assert check["ok"] is True and 0 <= check["latency_ms"] < 1500


@pytest.mark.parametrize("server", ["mongo", "postgres", "valkey"])
def test_ready_is_503_while_a_server_is_down_and_200_when_it_returns(obs: Obs, server: str) -> None:
    name = {"mongo": "mongodb", "postgres": "postgresql", "valkey": "valkey"}[server]
    obs.stack.stop_server(server)
    try:
        start = time.monotonic()
        # the operator's token: an admin key cannot be checked while MongoDB is away
        ready = lambda: obs.client.get("/ready", headers=METRICS_AUTH)  # noqa: E731
        r = wait_for(lambda: (r := ready()).status_code == 503 and r, f"/ready 503 ({server})")
        body = r.json()
        assert body["status"] == "unavailable" and body["checks"][name]["ok"] is False
        assert body["checks"][name]["error"] and body["checks"][name]["latency_ms"] < 2500
        assert all(c["ok"] for n, c in body["checks"].items() if n != name)
        assert time.monotonic() - start < 15
        metrics = obs.client.get("/metrics", headers=METRICS_AUTH)  # still answers, and says which source is missing
        assert metrics.status_code == 200
        if server in ("mongo", "valkey"):
            assert value(parse_metrics(metrics.text), "docproc_metrics_source_up", source=name) == 0
    finally:
        obs.stack.restart_server(server)
    wait_for(lambda: obs.client.get("/ready").status_code == 200, f"/ready 200 after {server} returned", 60)


def test_ready_is_503_when_storage_is_unwritable(obs: Obs) -> None:
    uploads = Path(obs.stack.env["DATA_DIR"]) / "uploads"
    aside = uploads.with_name("uploads-aside")
    uploads.rename(aside)
    uploads.write_text("not a directory")
    try:
        r = wait_for(lambda: (r := obs.client.get("/ready")).status_code == 503 and r, "/ready 503 (storage)")
        assert r.json()["checks"]["storage"]["ok"] is False
    finally:
        uploads.unlink()
        aside.rename(uploads)
    wait_for(lambda: obs.client.get("/ready").status_code == 200, "/ready 200 after storage returned")


def test_ready_tells_strangers_only_its_status(obs: Obs) -> None:
    with httpx.Client(base_url=obs.url) as anonymous:
        r = anonymous.get("/ready")
        assert r.status_code == 200 and r.json() == {"status": "ready"}  # no topology, latencies or errors
        wrong = anonymous.get("/ready", headers={"Authorization": "Bearer dp_000000000000_" + "x" * 43})
        assert wrong.json() == {"status": "ready"}
    read_only = obs.stack.client(obs.url, scopes="read", mongo_db=MONGO_DB)
    assert "checks" not in read_only.get("/ready").json()  # a tenant's key is no operator
    read_only.close()
    assert set(obs.client.get("/ready").json()["checks"]) == {"mongodb", "valkey", "postgresql", "storage"}  # admin


def test_ready_reuses_its_checks_for_a_moment(obs: Obs) -> None:
    first = obs.client.get("/ready", headers=METRICS_AUTH).json()["checks"]
    again = [obs.client.get("/ready", headers=METRICS_AUTH).json()["checks"] for _ in range(20)]
    assert sum(1 for a in again if a == first) >= 15  # the same round of checks (READY_CACHE_S = 2 s)
    time.sleep(2.2)
    later = [obs.client.get("/ready", headers=METRICS_AUTH).json()["checks"] for _ in range(3)]
    assert any(c != first for c in later)  # a new round: new latencies
