"""The image's healthcheck for the worker role, against a real Valkey and RQ worker."""

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import servers
from tests.fixtures.deploy import healthcheck


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = servers.free_port()
    proc = subprocess.Popen(servers.valkey_argv(port, tmp_path_factory.mktemp("valkey")), stdout=subprocess.DEVNULL)
    url = servers.valkey_url(port)
    try:
        servers.wait_valkey(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_healthcheck_worker_role_finds_its_rq_worker(valkey: str, tmp_path: Path) -> None:
    assert healthcheck("worker", tmp_path, VALKEY_URL=valkey) == 1  # no worker registered yet
    rq = shutil.which("rq", path=str(Path(sys.executable).parent))
    worker = subprocess.Popen(
        [rq, "worker", "--url", valkey, "--worker-class", "rq.worker.SimpleWorker", "health-test"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while healthcheck("worker", tmp_path, VALKEY_URL=valkey) != 0:
            assert worker.poll() is None and time.monotonic() < deadline, "worker never looked healthy"
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait(15)
    assert healthcheck("worker", tmp_path, VALKEY_URL=valkey) == 1  # it deregistered on shutdown
    unreachable = f"redis://127.0.0.1:{servers.free_port()}/0"
    assert healthcheck("worker", tmp_path, VALKEY_URL=unreachable) == 1
