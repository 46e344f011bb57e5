"""STORAGE=s3 against moto's S3 server: the API streams to S3, a real `rq worker`
process reads from it, DELETE removes the objects; S3 away or misconfigured is a 503."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from app import scratch
from tests.fixtures.api import upload, wait_final
from tests.fixtures.moto import BUCKET, s3_client, start_moto
from tests.fixtures.stack import Stack, rq_worker_argv, start_api


def test_s3_backend_end_to_end(stack: Stack, s3_env: dict[str, str]) -> None:
    api, url = start_api(stack, "api-s3", env=s3_env)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        with stack.client(url) as client:
            text = b"The glacier museum in Skarvik opens its ice cave to visitors every winter solstice."
            fid = upload(client, ("../glacier.txt", text)).json()["files"][0]["file_id"]
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"uploads/{fid}/")["Contents"]]
            assert keys == [f"uploads/{fid}/glacier.txt"]
            assert s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read() == text

            worker = stack.spawn("worker-s3", rq_worker_argv("ingest-s3"), env=s3_env)
            assert worker.popen.wait(180) == 0, worker.tail()
            assert wait_final(client, [fid])[fid]["status"] == "embedded"
            hit = client.post("/query", json={"query": "ice cave museum open at the solstice", "k": 1}).json()
            assert hit["results"][0]["file_id"] == fid

            assert client.delete(f"/files/{fid}").status_code == 204
            assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"uploads/{fid}/").get("KeyCount", 0) == 0
    finally:
        api.stop()


def _assert_storage_unavailable(r: httpx.Response, endpoint: str) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {
        "detail": {"code": "dependency_unavailable", "message": "Object storage is unavailable; retry later."}
    }
    assert int(r.headers["retry-after"]) >= 1
    assert endpoint.removeprefix("http://") not in r.text and endpoint.rsplit(":", 1)[1] not in r.text


def _multipart(boundary: str, name: str, data: bytes) -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
    return (head + "Content-Type: text/plain\r\n\r\n").encode() + data + b"\r\n"


def _wait_for_object(endpoint: str, suffix: str) -> None:
    s3, deadline = s3_client(endpoint), time.monotonic() + 30
    while not any(o["Key"].endswith(suffix) for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])):
        assert time.monotonic() < deadline, f"no object *{suffix} in S3"
        time.sleep(0.05)


def _spooled(data_dir: Path) -> list[Path]:
    """Spooled bytes left behind (each process's scratch directory keeps its own lock file)."""
    return [p for p in (data_dir / "spool").rglob("*") if p.is_file() and p.name != scratch.LOCK]


@pytest.mark.timeout(180)
def test_object_storage_away_is_503_and_the_upload_is_rolled_back(stack: Stack, tmp_path: Path) -> None:
    """S3 errors were 500s (EndpointConnectionError out of the upload, the delete, ...). Now 503 with
    Retry-After, no host in the answer; an upload whose S3 write fails mid-request keeps nothing (status
    documents, spool files; an object already written stays for the watchdog's orphan sweep)."""
    moto, env = start_moto(stack, "moto-away")
    endpoint = env["S3_ENDPOINT_URL"]
    data_dir = tmp_path / "data"
    api, url = start_api(stack, "api-s3-away", env={**env, "DATA_DIR": str(data_dir), "QUEUE_NAME": "ingest-s3-away"})
    tenant = f"s3away-{uuid.uuid4().hex[:6]}"
    try:
        with stack.client(url, tenant=tenant) as client:
            kept = client.post("/upload", files=[("files", ("kept.txt", b"kept while S3 was up", "text/plain"))])
            assert kept.status_code == 202, kept.text
            kept_id = kept.json()["files"][0]["file_id"]

            boundary = uuid.uuid4().hex

            def body() -> Iterator[bytes]:  # the first file reaches S3, then S3 goes away
                yield _multipart(boundary, "first.txt", b"first file, written to S3")
                yield _multipart(boundary, "second.txt", b"second file, S3 is gone by its end")
                _wait_for_object(endpoint, "/first.txt")
                moto.stop()
                yield f"--{boundary}--\r\n".encode()

            r = client.post(
                "/upload", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            )
            _assert_storage_unavailable(r, endpoint)
            assert [f["file_id"] for f in client.get("/files").json()["items"]] == [kept_id]
            assert _spooled(data_dir) == []

            files = [("files", ("later.txt", b"uploaded while S3 is away", "text/plain"))]
            _assert_storage_unavailable(client.post("/upload", files=files), endpoint)
            r = client.post("/upload", files=files, headers={"Idempotency-Key": "k1"})
            _assert_storage_unavailable(r, endpoint)
            _assert_storage_unavailable(
                client.post("/upload", files=files, headers={"Idempotency-Key": "k1"}), endpoint
            )
            assert client.get("/files").json()["total"] == 1 and _spooled(data_dir) == []

            _assert_storage_unavailable(client.delete(f"/files/{kept_id}"), endpoint)
            assert client.get(f"/files/{kept_id}").json()["status"] == "deleting"  # a retry (or the watchdog) ends it
            ready = client.get("/ready")
            assert ready.status_code == 503 and not ready.json()["checks"]["storage"]["ok"]
    finally:
        api.stop()
        moto.stop()
    log = api.log.read_text(errors="replace")
    assert "Object storage unavailable during POST /upload" in log and "Exception in ASGI application" not in log


def test_a_missing_bucket_is_503_not_500(stack: Stack, s3_env: dict[str, str], tmp_path: Path) -> None:
    """A ClientError (NoSuchBucket: the operator's setting, not the caller's request) was a 500."""
    env = {**s3_env, "S3_BUCKET": "no-such-bucket", "DATA_DIR": str(tmp_path / "data")}
    api, url = start_api(stack, "api-s3-nobucket", env=env)
    try:
        with stack.client(url, tenant=f"s3nb-{uuid.uuid4().hex[:6]}") as client:
            r = client.post("/upload", files=[("files", ("a.txt", b"no bucket for this", "text/plain"))])
            _assert_storage_unavailable(r, s3_env["S3_ENDPOINT_URL"])
            assert client.get("/files").json()["total"] == 0 and _spooled(tmp_path / "data") == []
    finally:
        api.stop()
