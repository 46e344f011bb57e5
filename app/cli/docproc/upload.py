"""`docproc upload`: a folder tree uploaded file by file, N at a time, safely re-runnable.

- One request per file (the API is all or nothing per request: one bad file must not sink the rest),
  each with an `Idempotency-Key` derived from what the request carries (the file's SHA-256, its name
  and the metadata), so a re-run after a crash or Ctrl-C gets the first answers replayed (reported
  as `skipped`) and uploads nothing twice; content already there under another name is `duplicate`.
- 429 (`rate_limited`, `tenant_queue_full`) and 503 are waited out as `Retry-After` says, a 409
  `idempotency_key_in_use` (the same upload still running, e.g. from a crashed run) a moment, a
  network error with backoff; every retry carries the same key.
- Progress: an overall bar and one per file in flight (bytes up, then with `--wait` the processing
  states until `embedded` or `failed`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from app.cli.docproc.client import Config, error_of, retry_after

CHUNK = 256 * 1024
NETWORK_ATTEMPTS = 5
BUSY_ATTEMPTS = 60  # 429/503/409 answers waited out before giving up on a file
FINAL = ("embedded", "failed")


@dataclass
class Outcome:
    """What became of one file: `result` is embedded, queued, processing, skipped (uploaded by an
    earlier run), duplicate (its content is already there), failed (processing) or refused (upload)."""

    path: str
    result: str = "pending"
    file_id: str | None = None
    code: str | None = None
    message: str | None = None
    status: str | None = None

    @property
    def ok(self) -> bool:
        return self.result not in ("failed", "refused")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def collect(paths: Iterable[Path], recursive: bool, glob: str | None) -> list[Path]:
    """The files named, and those in the folders named (their subfolders too with `recursive`),
    keeping names that match `glob` (`*.pdf`); hidden files and folders inside folders are skipped."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            walk = sorted(path.rglob("*") if recursive else path.iterdir())
            for p in walk:
                hidden = any(part.startswith(".") for part in p.relative_to(path).parts)
                if p.is_file() and not hidden and (glob is None or fnmatch.fnmatch(p.name, glob)):
                    out.append(p)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def idempotency_key(sha256: str, name: str, metadata: dict[str, Any] | None) -> str:
    """The same file, name and metadata: the same request, the same key (a re-run is replayed)."""
    what = json.dumps([sha256, name, metadata or {}], sort_keys=True)
    return "docproc-cli-" + hashlib.sha256(what.encode()).hexdigest()


class CountingFile:
    """A file httpx streams from, reporting each block read (for the progress bars)."""

    def __init__(self, path: Path, on_read: Callable[[int], None]) -> None:
        self.f = path.open("rb")
        self.on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(CHUNK if n is None or n < 0 else n)
        self.on_read(len(data))
        return data

    def fileno(self) -> int:
        return self.f.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()


@dataclass
class Uploader:
    config: Config
    metadata: dict[str, Any] | None
    wait: bool
    progress: Progress
    overall: TaskID
    poll_s: float = 1.0
    sleep: Callable[[float], Any] = asyncio.sleep
    outcomes: list[Outcome] = field(default_factory=list)

    async def one(self, http: httpx.AsyncClient, path: Path, label: str) -> Outcome:
        out = Outcome(path=label)
        size = path.stat().st_size
        task = self.progress.add_task(label, total=size or 1, state="hashing")
        try:
            sha = await asyncio.to_thread(sha256_of, path)
            key = idempotency_key(sha, path.name, self.metadata)
            self.progress.update(task, state="uploading")
            await self._upload(http, path, key, task, size, out)
            if self.wait and out.file_id and out.result != "refused":
                await self._wait(http, task, out)
        finally:
            self.progress.remove_task(task)
        return out

    async def _upload(
        self, http: httpx.AsyncClient, path: Path, key: str, task: TaskID, size: int, out: Outcome
    ) -> None:
        network_failures = busy = 0
        data = {"metadata": json.dumps(self.metadata)} if self.metadata else None
        sent = 0

        def on_read(n: int) -> None:
            nonlocal sent
            sent += n
            self.progress.advance(task, n)
            self.progress.advance(self.overall, n)

        while True:
            self.progress.advance(self.overall, -sent)  # a retry sends the file again
            sent = 0
            self.progress.update(task, completed=0)
            reader = CountingFile(path, on_read)
            try:
                response = await http.post(
                    "/upload",
                    files=[("files", (path.name, reader, "application/octet-stream"))],
                    data=data,
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError as exc:
                network_failures += 1
                if network_failures >= NETWORK_ATTEMPTS:
                    out.result, out.code, out.message = "refused", "network_error", f"{type(exc).__name__}: {exc}"
                    return
                await self.sleep(min(30.0, 2.0**network_failures))
                continue
            finally:
                reader.close()
            if response.status_code in (429, 503) or (
                response.status_code == 409 and error_of(response).code == "idempotency_key_in_use"
            ):
                busy += 1
                if busy >= BUSY_ATTEMPTS:
                    break
                wait = retry_after(response, default=2.0)
                self.progress.update(task, state=f"waiting {wait:.0f} s ({error_of(response).code})")
                await self.sleep(wait)
                continue
            break
        self.progress.update(task, completed=size or 1)
        self.progress.advance(self.overall, size - sent)  # all of it, read or refused before the end
        if not response.is_success:
            error = error_of(response)
            out.result, out.code, out.message = "refused", error.code, error.message
            return
        entry = response.json()["files"][0]
        out.file_id, out.status = entry["file_id"], entry["status"]
        if response.headers.get("idempotent-replayed") == "true":
            out.result = "skipped"
        elif entry.get("duplicate_of"):
            out.result = "duplicate"
        else:
            out.result = "queued"

    async def _wait(self, http: httpx.AsyncClient, task: TaskID, out: Outcome) -> None:
        """Poll the file until it is embedded or failed; `embedded`/`failed` replace queued (not skipped)."""
        while True:
            response = await http.get(f"/files/{out.file_id}")
            if response.status_code == 404:
                out.result, out.code, out.message = "failed", "file_not_found", "The file is gone (deleted?)."
                return
            if response.is_success:
                doc = response.json()
                out.status = doc["status"]
                stage = f" ({doc['stage']})" if doc.get("stage") and doc["status"] == "processing" else ""
                self.progress.update(task, state=f"{doc['status']}{stage}")
                if doc["status"] in FINAL:
                    if doc["status"] == "failed":
                        error = doc.get("error") or {}
                        out.result, out.code, out.message = "failed", error.get("code"), error.get("message")
                    elif out.result == "queued":
                        out.result = "embedded"
                    return
            await self.sleep(self.poll_s if response.is_success else retry_after(response, 2.0))


def make_progress(console: Any) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[state]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


async def upload_all(
    config: Config, files: list[Path], root_labels: dict[Path, str], metadata: dict[str, Any] | None,
    concurrency: int, wait: bool, console: Any,
) -> list[Outcome]:  # fmt: skip
    """Upload `files`, `concurrency` at a time; one Outcome each, in the order given."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(config.timeout, write=None)  # a big file may take long to send
    async with httpx.AsyncClient(
        base_url=config.url.rstrip("/"), headers=config.headers(), timeout=timeout, limits=limits
    ) as http:
        with make_progress(console) as progress:
            total = sum(p.stat().st_size for p in files) or 1
            overall = progress.add_task(f"{len(files)} files", total=total, state="")
            uploader = Uploader(config, metadata, wait, progress, overall)
            gate = asyncio.Semaphore(concurrency)

            async def guarded(path: Path) -> Outcome:
                async with gate:
                    return await uploader.one(http, path, root_labels.get(path, str(path)))

            return list(await asyncio.gather(*(guarded(p) for p in files)))
