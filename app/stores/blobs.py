"""File bytes: local disk (`{DATA_DIR}/uploads/{file_id}/{name}`) or S3.

The API writes through `open_writer` (async, streamed); workers read through
`local_copy` (sync, a path on local disk for the parsers).
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

from app import scratch
from app.settings import Settings


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class BlobStore(Protocol):
    async def open_writer(self, key: str) -> BlobWriter: ...
    async def delete_file(self, file_id: str) -> None: ...
    def local_copy(self, key: str) -> AbstractContextManager[Path]: ...
    def delete_file_sync(self, file_id: str) -> None: ...
    def list_file_ids(self) -> list[str]: ...


class _LocalFile:
    """A file written from the event loop: bytes gather in memory and go to disk a MiB
    at a time, so a 1 MB upload costs two thread hops (open, then write + fsync + close),
    not one per network read (measured in bench/http.py)."""

    FLUSH_BYTES = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        self._chunks: list[bytes] = []
        self._pending = 0

    async def open(self) -> None:
        def open_sync() -> BinaryIO:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "wb")

        self._f = await anyio.to_thread.run_sync(open_sync)

    def _take(self) -> list[bytes]:
        chunks, self._chunks, self._pending = self._chunks, [], 0
        return chunks

    async def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._pending += len(data)
        if self._pending >= self.FLUSH_BYTES:
            await anyio.to_thread.run_sync(self._f.writelines, self._take())

    async def close(self, sync: bool) -> None:
        """Write what is left, fsync when `sync`, close."""
        chunks = self._take()

        def close_sync() -> None:
            try:
                self._f.writelines(chunks)
                self._f.flush()
                if sync:
                    os.fsync(self._f.fileno())
            finally:
                self._f.close()

        await anyio.to_thread.run_sync(close_sync)

    async def discard(self) -> None:
        def discard_sync() -> None:
            if self._f is not None:
                self._f.close()
            self.path.unlink(missing_ok=True)

        self._take()
        await anyio.to_thread.run_sync(discard_sync)


class _DiskWriter:
    """Written to `{name}.part`, renamed into place once complete and on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.part = _LocalFile(path.with_name(path.name + ".part"))

    async def open(self) -> "_DiskWriter":
        await self.part.open()
        return self

    async def write(self, data: bytes) -> None:
        await self.part.write(data)

    async def commit(self) -> None:
        await self.part.close(sync=True)
        await anyio.to_thread.run_sync(_rename_durably, self.part.path, self.path)

    async def abort(self) -> None:
        await self.part.discard()
        await anyio.to_thread.run_sync(lambda: self.path.unlink(missing_ok=True))


def _rename_durably(src: Path, dst: Path) -> None:
    """Rename, then fsync the directory: without it a crash can lose the rename (the file's own
    fsync does not cover the directory entry)."""
    os.replace(src, dst)
    fd = os.open(dst.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskBlobs:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # keys are built from safe names; belt and braces, as string work (resolve() stats every component)
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(f"{self.root}{os.sep}"):
            raise ValueError(f"blob key escapes the storage root: {key!r}")
        return Path(path)

    async def open_writer(self, key: str) -> BlobWriter:
        return await _DiskWriter(self._path(key)).open()

    async def delete_file(self, file_id: str) -> None:
        await anyio.to_thread.run_sync(self.delete_file_sync, file_id)

    def delete_file_sync(self, file_id: str) -> None:
        shutil.rmtree(self._path(file_id), ignore_errors=True)

    def list_file_ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_dir()] if self.root.exists() else []

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path


class _S3Writer:
    """Spools to a local temporary file, then one managed (multipart) upload."""

    def __init__(self, store: "S3Blobs", key: str) -> None:
        self.store = store
        self.key = key
        self.spool = _LocalFile(scratch.process_dir(store.spool_dir) / f"upload-{uuid.uuid4().hex}")

    async def open(self) -> "_S3Writer":
        await self.spool.open()
        return self

    async def write(self, data: bytes) -> None:
        await self.spool.write(data)

    async def commit(self) -> None:
        await self.spool.close(sync=False)  # S3 holds the durable copy
        try:
            await anyio.to_thread.run_sync(
                self.store.client.upload_file, str(self.spool.path), self.store.bucket, self.store.object_key(self.key)
            )
        finally:
            self.spool.path.unlink(missing_ok=True)

    async def abort(self) -> None:
        await self.spool.discard()


class S3Blobs:
    def __init__(self, client, bucket: str, prefix: str, spool_dir: Path) -> None:  # noqa: ANN001 - boto3 client
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.spool_dir = spool_dir  # scratch space: each process writes in its own (app/scratch.py)

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def open_writer(self, key: str) -> BlobWriter:
        return await _S3Writer(self, key).open()

    async def delete_file(self, file_id: str) -> None:
        await anyio.to_thread.run_sync(self.delete_file_sync, file_id)

    def delete_file_sync(self, file_id: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.object_key(f"{file_id}/")):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})

    def list_file_ids(self) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        ids = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            ids += [p["Prefix"][len(self.prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return ids

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        from botocore.exceptions import ClientError

        with scratch.temp_dir(self.spool_dir, "blob-") as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            try:
                self.client.download_file(self.bucket, self.object_key(key), str(path))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise FileNotFoundError(key) from exc
                raise
            yield path


def make_blob_store(settings: Settings) -> DiskBlobs | S3Blobs:
    if settings.storage == "s3":
        import boto3

        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
        return S3Blobs(client, settings.s3_bucket, settings.s3_prefix, scratch.root(settings))
    return DiskBlobs(settings.data_dir / "uploads")
