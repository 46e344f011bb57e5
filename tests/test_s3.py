"""STORAGE=s3 against moto's S3 server: the API streams to S3, a real `rq worker`
process reads from it, DELETE removes the objects."""

import dataclasses
import sys
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest

from app import localstack
from tests.helpers import upload, wait_final
from tests.stack import Stack, rq_worker_argv, start_api

BUCKET = "docproc-test"


@pytest.fixture(scope="module")
def s3_env(stack: Stack) -> Iterator[dict[str, str]]:
    port = localstack.free_port()
    proc = stack.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "STORAGE": "s3",
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "QUEUE_NAME": "ingest-s3",
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    s3.create_bucket(Bucket=BUCKET)
    yield env
    proc.stop()


def test_watchdog_publishes_queue_depth_to_cloudwatch(s3_env: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    from redis import Redis
    from rq import Queue

    from app.settings import Settings
    from worker.watchdog import cloudwatch_client, publish_queue_depth, watch

    w = watch()
    queue = Queue(w.settings.queue_name, connection=Redis.from_url(w.settings.valkey_url.get_secret_value()))
    queue.enqueue("worker.jobs.process_file", "not-a-file", job_id="depth-probe")
    settings = Settings(cloudwatch_region="us-east-1", cloudwatch_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        cloudwatch_namespace="DocprocTest")  # fmt: skip
    cw = cloudwatch_client(settings)
    try:
        depth = publish_queue_depth(dataclasses.replace(w, settings=settings), cw)
    finally:
        queue.remove("depth-probe")
    assert depth >= 1
    (metric,) = cw.list_metrics(Namespace="DocprocTest")["Metrics"]
    assert metric["MetricName"] == "QueueDepth"
    assert metric["Dimensions"] == [{"Name": "Queue", "Value": w.settings.queue_name}]


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
