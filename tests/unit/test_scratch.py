"""Scratch directories: a process's own, removed once the process is gone (kill -9 included)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app import scratch
from tests.fixtures import ROOT

HOLDER = """
import sys, time
from pathlib import Path
from app import scratch
d = scratch.process_dir(Path(sys.argv[1]))
(d / "spooled-upload").write_bytes(b"x" * 1000)
with scratch.temp_dir(Path(sys.argv[1]), "ocr-") as tmp:
    (Path(tmp) / "page.pgm").write_bytes(b"P5")
    print(d, flush=True)
    time.sleep(600)
"""


def _holder(base: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(base)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_process_leaves_its_scratch_to_the_sweep(tmp_path: Path) -> None:
    killed, killed_dir = _holder(tmp_path)
    alive, alive_dir = _holder(tmp_path)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert (killed_dir / "spooled-upload").exists()  # nothing cleaned up after a kill -9
        assert scratch.sweep(tmp_path) == 1
        assert not killed_dir.exists()
        assert (alive_dir / "spooled-upload").exists()  # a live process keeps its own
        mine = scratch.process_dir(tmp_path)
        assert scratch.sweep(tmp_path) == 0 and mine.exists()
    finally:
        alive.kill()
        alive.wait()
    assert scratch.sweep(tmp_path) == 1 and not alive_dir.exists()


def test_a_directory_without_its_lock_is_left_a_minute(tmp_path: Path) -> None:
    fresh = tmp_path / "123-fresh"
    fresh.mkdir()  # its process may be between mkdir and flock
    assert scratch.sweep(tmp_path) == 0
    old = time.time() - scratch.UNLOCKED_GRACE_S - 1
    os.utime(fresh, (old, old))
    assert scratch.sweep(tmp_path) == 1
