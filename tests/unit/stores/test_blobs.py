"""Stored bytes on disk: what a crash can and cannot lose."""

import asyncio
import os
import stat
from pathlib import Path

import pytest

from app.stores.blobs import DiskBlobs


def test_a_committed_file_has_its_directory_entry_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename into place is durable only once the directory is fsynced, not just the file."""
    synced: list[os.stat_result] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)

    async def write() -> None:
        writer = await DiskBlobs(tmp_path).open_writer("f1/report.txt")
        await writer.write(b"hello")
        await writer.commit()

    asyncio.run(write())
    stored = tmp_path / "f1" / "report.txt"
    assert stored.read_bytes() == b"hello" and not stored.with_name("report.txt.part").exists()
    directory = os.stat(stored.parent)
    assert any(stat.S_ISDIR(s.st_mode) and s.st_ino == directory.st_ino for s in synced), synced
    assert any(stat.S_ISREG(s.st_mode) for s in synced)  # and the file's bytes themselves
