"""`./run.sh`'s stack under supervisord: it serves, a killed worker comes back by
itself, Ctrl-C stops everything, and a restart keeps files and chunks."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from devstack import servers
from tests.fixtures import ROOT
from tests.fixtures.api import upload, wait_final
from tests.fixtures.stack import stack_dir


def _serve(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen:
    drop = ("MONGO_URL", "VALKEY_URL", "DATABASE_URL", "DATA_DIR", "AUTH")  # the local stack's AUTH=disabled
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        LOCAL_VALKEY_PORT=str(ports["valkey"]), LOCAL_MONGO_PORT=str(ports["mongo"]),
        LOCAL_POSTGRES_PORT=str(ports["postgres"]), API_BIND=f"127.0.0.1:{ports['api']}", API_WORKERS="1",
        LOCAL_WORKERS="2", WORKER_METRICS_PORT=str(ports["metrics"]),
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "serve", "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "supervisord exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("API did not come up")


def _ctl(data_dir: Path, *args: str) -> str:
    conf = data_dir / "run" / "supervisord.conf"
    cmd = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def _stop(proc: subprocess.Popen) -> list[psutil.Process]:
    """Ctrl-C to supervisord; returns the processes it managed that are still alive after it exits."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    proc.wait(90)
    return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(400)
def test_supervised_stack_restarts_killed_worker_and_keeps_data(stack) -> None:
    ports = {k: servers.free_port() for k in ("valkey", "mongo", "postgres", "api", "metrics")}
    url = f"http://127.0.0.1:{ports['api']}"
    data_dir = stack_dir("supervised") / "data"
    proc = _serve(data_dir, ports)
    try:
        _wait_health(url, proc)
        with httpx.Client(base_url=url, timeout=30) as client:
            fid = upload(client, ("kept.txt", b"The observatory on Mount Calder records meteor showers.")).json()[
                "files"
            ][0]["file_id"]
            assert wait_final(client, [fid])[fid]["status"] == "embedded"

        assert "RUNNING" in _ctl(data_dir, "status", "worker-1")
        with psycopg.connect(servers.postgres_url(ports["postgres"])) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone()[0] == "1GB"  # LOCAL_POSTGRES_SHARED_BUFFERS
        old = int(_ctl(data_dir, "pid", "worker-0"))
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            pid = _ctl(data_dir, "pid", "worker-0")
            if pid.isdigit() and int(pid) not in (0, old) and "RUNNING" in _ctl(data_dir, "status", "worker-0"):
                break
            assert time.monotonic() < deadline, _ctl(data_dir, "status")
            time.sleep(0.5)
        assert "RUNNING" in _ctl(data_dir, "status", "api")  # the rest kept running
    finally:
        leftovers = _stop(proc)
    assert leftovers == []

    proc = _serve(data_dir, ports)
    try:
        _wait_health(url, proc)
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get(f"/files/{fid}").json()["status"] == "embedded"
            hit = client.post("/query", json={"query": "meteor showers observatory", "k": 1}).json()["results"][0]
            assert hit["file_id"] == fid
    finally:
        assert _stop(proc) == []
    shutil.rmtree(data_dir.parent, ignore_errors=True)
