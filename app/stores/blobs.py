"""File bytes: local disk (`{DATA_DIR}/uploads/{file_id}/{name}`) or S3.

The API writes through `open_writer` (async, streamed); workers read through
`local_copy` (sync, a path on local disk for the parsers).
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import aiofiles
import aiofiles.os
import anyio

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


class _DiskWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self._f = None

    async def open(self) -> "_DiskWriter":
        await aiofiles.os.makedirs(self.path.parent, exist_ok=True)
        self._f = await aiofiles.open(self.part, "wb")
        return self

    async def write(self, data: bytes) -> None:
        await self._f.write(data)

    async def commit(self) -> None:
        await self._f.flush()
        await anyio.to_thread.run_sync(os.fsync, self._f.fileno())
        await self._f.close()
        await aiofiles.os.replace(self.part, self.path)

    async def abort(self) -> None:
        if self._f is not None:
            await self._f.close()
        for p in (self.part, self.path):
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(p)


class DiskBlobs:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:  # keys are built from safe names; belt and braces
            raise ValueError(f"blob key escapes the storage root: {key!r}")
        return path

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
        fd, name = tempfile.mkstemp(prefix="upload-", dir=store.spool_dir)
        os.close(fd)
        self.tmp = Path(name)
        self._f = None

    async def open(self) -> "_S3Writer":
        self._f = await aiofiles.open(self.tmp, "wb")
        return self

    async def write(self, data: bytes) -> None:
        await self._f.write(data)

    async def commit(self) -> None:
        await self._f.close()
        try:
            await anyio.to_thread.run_sync(
                self.store.client.upload_file, str(self.tmp), self.store.bucket, self.store.object_key(self.key)
            )
        finally:
            self.tmp.unlink(missing_ok=True)

    async def abort(self) -> None:
        if self._f is not None:
            await self._f.close()
        self.tmp.unlink(missing_ok=True)


class S3Blobs:
    def __init__(self, client, bucket: str, prefix: str, spool_dir: Path) -> None:  # noqa: ANN001 - boto3 client
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.spool_dir = spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)

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

        with tempfile.TemporaryDirectory(prefix="blob-", dir=self.spool_dir) as tmp:
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
        return S3Blobs(client, settings.s3_bucket, settings.s3_prefix, settings.data_dir / "spool")
    return DiskBlobs(settings.data_dir / "uploads")
