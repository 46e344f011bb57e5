"""Scratch space on local disk: each process's own directory, removed when the process is gone.

Upload spools (S3 storage), a worker's local copy of a stored file, OCR's rendered pages:
everything a process writes only while it works goes under `{DATA_DIR}/spool/<pid>-<random>/`.
The process holds an exclusive `flock` on that directory's `.lock` for its whole life, and the
kernel releases it however the process ends, `kill -9` included. `sweep` removes every
directory whose lock it can take: its process is gone, so nothing there is in use. The API
and each worker sweep when they start, the watchdog on every pass.
"""

import fcntl
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from app.settings import Settings

log = logging.getLogger("app.scratch")
LOCK = ".lock"
UNLOCKED_GRACE_S = 60

_mine: dict[tuple[int, Path], tuple[Path, int]] = {}  # (pid, root) -> (directory, locked fd)


def root(settings: Settings) -> Path:
    return (settings.data_dir / "spool").resolve()


def process_dir(base: Path) -> Path:
    """This process's scratch directory under `base`, created and locked on first use (again after a fork)."""
    key = (os.getpid(), base)
    if key not in _mine:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        fd = os.open(path / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _mine[key] = (path, fd)
    return _mine[key][0]


def temp_dir(base: Path, prefix: str) -> "tempfile.TemporaryDirectory[str]":
    """A temporary directory inside this process's scratch directory (removed on exit, or by `sweep`)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=process_dir(base))


def sweep(base: Path) -> int:
    """Remove the scratch directories under `base` whose process is gone; how many were removed."""
    if not base.is_dir():
        return 0
    removed = 0
    for path in base.iterdir():
        if not path.is_dir() or any(path == mine for mine, _ in _mine.values()):
            continue
        if _owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d scratch directories of processes that are gone under %s", removed, base)
    return removed


def _owner_gone(path: Path) -> bool:
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except FileNotFoundError:  # its process may be between mkdir and flock: give it a minute
        return time.time() - path.stat().st_mtime > UNLOCKED_GRACE_S
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
