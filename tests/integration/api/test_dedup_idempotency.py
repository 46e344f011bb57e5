"""Duplicate content and retried requests: dedup per tenant and policy, Idempotency-Key replays."""

import uuid

import httpx
import pytest
from pymongo import MongoClient

from app.settings import get_settings
from tests.fixtures.api import unique, upload, wait_final
from tests.fixtures.stack import Stack, start_api
from tests.fixtures.worker import run_worker


def test_duplicate_returns_the_existing_file(client: httpx.Client) -> None:
    body = unique("The pier clock was restored in the spring.")
    first = upload(client, ("pier.txt", body))
    assert first.status_code == 202
    fid = first.json()["files"][0]["file_id"]
    total = client.get("/files").json()["total"]
    again = upload(client, ("pier-copy.txt", body))
    assert again.status_code == 200, again.text
    (f,) = again.json()["files"]
    assert f["file_id"] == fid and f["duplicate_of"] == fid and f["status"] == "queued"
    assert client.get("/files").json()["total"] == total  # nothing new stored


def test_a_failed_file_is_no_duplicate(client: httpx.Client) -> None:
    """Only live files (queued, processing, embedded) answer for their content; the status
    is checked in Python after an index lookup on (tenant, sha256), so this guards it."""
    body = unique("The breakwater survey was repeated after the storm.")
    failed = upload(client, ("survey.txt", body)).json()["files"][0]["file_id"]
    s = get_settings()
    col = MongoClient(s.mongo_url.get_secret_value())[s.mongo_db]["files"]
    assert col.update_one({"_id": failed}, {"$set": {"status": "failed"}}).matched_count == 1
    again = upload(client, ("survey-again.txt", body))
    assert again.status_code == 202, again.text
    (f,) = again.json()["files"]
    assert f["duplicate_of"] is None and f["file_id"] != failed
    live = upload(client, ("survey-third.txt", body)).json()["files"][0]
    assert live["duplicate_of"] == f["file_id"]  # the live one answers, not the older failed one


def test_duplicates_within_one_request(client: httpx.Client) -> None:
    body = unique("Twin files in one request.")
    r = upload(client, ("a.txt", body), ("b.txt", body), ("c.txt", unique("A different one.")))
    assert r.status_code == 202
    a, b, c = r.json()["files"]
    assert a["duplicate_of"] is None and b["duplicate_of"] == a["file_id"] and c["duplicate_of"] is None
    run_worker()
    docs = wait_final(client, [a["file_id"], c["file_id"]])
    assert {d["status"] for d in docs.values()} == {"embedded"}


@pytest.mark.parametrize(("policy", "expected"), [("reject", 409), ("allow", 202)])
def test_dedup_policies(stack: Stack, policy: str, expected: int) -> None:
    proc, url = start_api(stack, f"api-dedup-{policy}", env={"DEDUP": policy})
    try:
        with stack.client(url) as c:
            body = unique(f"Dedup policy {policy}.")
            fid = upload(c, ("one.txt", body)).json()["files"][0]["file_id"]
            r = upload(c, ("two.txt", body))
            assert r.status_code == expected, r.text
            if policy == "reject":
                assert r.json()["detail"]["code"] == "duplicate" and fid in r.json()["detail"]["message"]
            else:
                assert r.json()["files"][0]["file_id"] != fid and r.json()["files"][0]["duplicate_of"] is None
    finally:
        proc.stop()


def test_idempotency_key_replays_the_first_response(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    files = [("files", ("idem.txt", unique("Idempotent upload."), "text/plain"))]
    first = client.post("/upload", files=files, headers={"Idempotency-Key": key})
    second = client.post("/upload", files=files, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json() and second.headers.get("idempotent-replayed") == "true"
    other = client.post(
        "/upload", files=[("files", ("other.txt", b"a different, longer body" * 10, "text/plain"))],
        headers={"Idempotency-Key": key},
    )  # fmt: skip
    assert other.status_code == 422 and other.json()["detail"]["code"] == "idempotency_key_reused"
    # a refused request releases its key: the retry is processed afresh
    key2 = str(uuid.uuid4())
    bad = client.post("/upload", files=[("files", ("e.txt", b"", "text/plain"))], headers={"Idempotency-Key": key2})
    assert bad.status_code == 422
    good = client.post("/upload", files=[("files", ("e.txt", unique("now"), "text/plain"))],
                       headers={"Idempotency-Key": key2})  # fmt: skip
    assert good.status_code == 202
