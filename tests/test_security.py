"""API keys, tenants, limits and hostile input, through the real stack (issue 9).

The session API runs with AUTH=enabled (tests/stack.py); keys are made straight in
MongoDB by `Stack.key` (as `python -m app.keys create` does) or through /admin/keys.
"""

import asyncio
import concurrent.futures
import contextlib
import io
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient, MongoClient

from app.api.auth import check_bind, is_loopback, parse_key, parse_scopes
from app.observability.logs import ContextFilter, JsonFormatter, redact
from app.settings import Settings
from app.stores.audit import Actor
from app.stores.keys import KeyLimitReached, KeyStore
from devstack.servers import free_port
from tests.helpers import make_pdf, run_worker, upload, wait_final
from tests.stack import METRICS_TOKEN, Stack, start_api

ROOT = Path(__file__).resolve().parent.parent
SECRET_MARK = "s3cretPassw0rd"


def _unique(text: str) -> bytes:
    return f"{text} ({uuid.uuid4()})".encode()


def _code(r: httpx.Response) -> str:
    return r.json()["detail"]["code"]


# --- which operations need what -----------------------------------------------------------------------------


def _operations(url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    ops = []
    for path, methods in spec["paths"].items():
        concrete = path.replace("{file_id}", str(uuid.uuid4())).replace("{key_id}", "0123456789ab")
        ops += [(method.upper(), concrete) for method in methods]
    return ops


def test_every_operation_but_health_and_ready_needs_a_key(api_url: str) -> None:
    ops = _operations(api_url)
    assert len(ops) >= 15
    open_ = {("GET", "/health"), ("GET", "/ready")}
    for method, path in ops:
        r = httpx.request(method, f"{api_url}{path}", timeout=30)
        if (method, path) in open_:
            assert r.status_code == 200, (method, path, r.text)
            continue
        if path == "/retrieval":  # Dify's External Knowledge API answers in Dify's own shape
            assert r.status_code == 403 and r.json()["error_code"] == 1001, r.text
            continue
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert _code(r) == "unauthorized" and r.headers["www-authenticate"] == "Bearer", (method, path)
    # the schema and the docs stay readable (they hold no data)
    assert httpx.get(f"{api_url}/docs", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "presented",
    [
        "not-a-key",
        "dp_0123456789ab_" + "A" * 43,  # well formed, no such key
        "Bearer",
        "dp_0123456789ab_short",
    ],
)
def test_malformed_and_unknown_keys_are_401(api_url: str, presented: str) -> None:
    for headers in ({"Authorization": f"Bearer {presented}"}, {"X-API-Key": presented}):
        r = httpx.get(f"{api_url}/files", headers=headers, timeout=10)
        assert r.status_code == 401 and _code(r) == "unauthorized", r.text


def test_wrong_secret_and_revoked_keys_are_401_like_unknown_ones(api_url: str, stack: Stack) -> None:
    admin = stack.client(api_url)
    created = admin.post("/admin/keys", json={"name": "short-lived", "scopes": ["read"]})
    assert created.status_code == 201, created.text
    body = created.json()
    key, key_id = body["key"], body["key_id"]
    assert parse_key(key) == (key_id, key.split("_", 2)[2]) and body["tenant"] == "default"
    assert "hash" not in body and body["revoked_at"] is None

    ok = httpx.get(f"{api_url}/files", headers={"X-API-Key": key}, timeout=10)
    assert ok.status_code == 200
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown = httpx.get(f"{api_url}/files", headers={"Authorization": f"Bearer {tampered}"}, timeout=10)
    assert unknown.status_code == 401

    assert admin.delete(f"/admin/keys/{key_id}").status_code == 204
    assert admin.delete(f"/admin/keys/{key_id}").status_code == 204  # idempotent
    revoked = httpx.get(f"{api_url}/files", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert revoked.status_code == 401 and revoked.json() == unknown.json()  # no oracle: the same answer
    listed = {k["key_id"]: k for k in admin.get("/admin/keys").json()["items"]}
    assert listed[key_id]["revoked_at"] is not None and listed[key_id]["last_used_at"] is not None
    assert all("hash" not in k and "key" not in k for k in listed.values())
    admin.close()


def test_scopes(api_url: str, stack: Stack) -> None:
    reader = stack.client(api_url, scopes="read")
    writer = stack.client(api_url, scopes="write")
    fid = upload(writer, ("scoped.txt", _unique("Scopes decide who may write."))).json()["files"][0]["file_id"]

    assert reader.get(f"/files/{fid}").status_code == 200
    assert reader.post("/query", json={"query": "scopes", "k": 1}).status_code == 200
    r = upload(reader, ("nope.txt", _unique("A reader cannot upload.")))
    assert r.status_code == 403 and _code(r) == "forbidden" and "'write'" in r.json()["detail"]["message"]
    assert reader.delete(f"/files/{fid}").status_code == 403
    assert reader.get("/admin/keys").status_code == 403
    assert reader.get("/admin/audit").status_code == 403
    assert reader.get("/system-metrics").status_code == 403

    assert writer.get(f"/files/{fid}").status_code == 403  # write does not imply read
    assert writer.post("/query", json={"query": "scopes", "k": 1}).status_code == 403
    assert writer.delete(f"/files/{fid}").status_code == 204
    assert writer.post("/admin/keys", json={"name": "x", "scopes": ["read"]}).status_code == 403
    for c in (reader, writer):
        c.close()


def test_metrics_want_the_metrics_token(api_url: str, stack: Stack) -> None:
    with stack.client(api_url) as admin:  # an admin API key is a tenant's, not the operator's
        r = admin.get("/metrics")
        assert r.status_code == 401 and _code(r) == "unauthorized"
        assert admin.get("/system-metrics").status_code == 200  # host metrics: admin keys may look
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    r = httpx.get(f"{api_url}/metrics", headers=bearer, timeout=10)
    assert r.status_code == 200 and "docproc_files" in r.text and 'tenant="' not in r.text
    assert httpx.get(f"{api_url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(f"{api_url}/system-metrics", headers=bearer, timeout=10).status_code == 200


# --- tenant isolation ----------------------------------------------------------------------------------------


def test_tenant_isolation_across_every_endpoint(api_url: str, stack: Stack) -> None:
    a_name, b_name = f"ta-{uuid.uuid4().hex[:6]}", f"tb-{uuid.uuid4().hex[:6]}"
    a, b = stack.client(api_url, tenant=a_name), stack.client(api_url, tenant=b_name)
    marker = f"zephyrine{uuid.uuid4().hex[:6]}"
    content = f"The {marker} valve on the lighthouse pump is replaced every spring. It is tenant A's secret.".encode()
    r = upload(a, ("a-secret.txt", content))
    assert r.status_code == 202, r.text
    fid = r.json()["files"][0]["file_id"]
    run_worker()
    assert wait_final(a, [fid])[fid]["status"] == "embedded"

    # get, list, delete: B cannot see or touch A's file; an id of another tenant is 404, not 403
    r = b.get(f"/files/{fid}")
    assert r.status_code == 404 and _code(r) == "file_not_found"
    assert fid not in {f["file_id"] for f in b.get("/files").json()["items"]}
    assert b.get("/files").json()["total"] == 0
    assert b.delete(f"/files/{fid}").status_code == 404
    assert a.get(f"/files/{fid}").json()["status"] == "embedded"

    # query, search, answers: nothing of A's, even when B names A's file id in the filters
    for mode in ("vector", "keyword", "hybrid"):
        body = {"query": f"{marker} valve pump", "k": 10, "mode": mode}
        assert b.post("/query", json=body).json()["results"] == []
        found = {h["file_id"] for h in a.post("/query", json=body).json()["results"]}
        assert fid in found, mode
        body["filters"] = {"file_ids": [fid]}
        assert b.post("/query", json=body).json()["results"] == []
    assert b.get("/search", params={"q": marker, "file_id": fid}).json()["results"] == []
    answer = b.post("/generate-text-with-context", json={"query": f"When is the {marker} valve replaced?"}).json()
    assert answer["passages"] == [] and marker not in answer["answer"]
    mine = a.post("/generate-text-with-context", json={"query": f"When is the {marker} valve replaced?"}).json()
    assert mine["passages"] and mine["passages"][0]["file_id"] == fid
    assert b.post("/generate", json={"query": "anything"}).status_code == 503  # no LLM here, same for all

    # stats (the tenant's metrics): B counts nothing of A's
    stats_a, stats_b = a.get("/stats").json(), b.get("/stats").json()
    assert stats_a["tenant"] == a_name and stats_a["files"]["embedded"] == 1
    assert stats_b["tenant"] == b_name and sum(stats_b["files"].values()) == 0

    # dedup is per tenant: the same bytes uploaded by B are B's own new file
    r = upload(b, ("b-copy.txt", content))
    assert r.status_code == 202 and r.json()["files"][0]["duplicate_of"] is None, r.text
    b_fid = r.json()["files"][0]["file_id"]
    assert upload(a, ("a-again.txt", content)).json()["files"][0]["duplicate_of"] == fid

    # the interaction log carries the asking tenant
    with MongoClient(stack.env["MONGO_URL"]) as mongo:
        logged = list(mongo[stack.env["MONGO_DB"]]["interactions"].find({"query": {"$regex": marker}}))
        assert logged and {d["tenant"] for d in logged} == {a_name, b_name}
        assert all(d["retrieved"] == [] for d in logged if d["tenant"] == b_name)

    # keys: A's admin neither lists nor revokes B's keys
    b_key_id = parse_key(stack.key(b_name))[0]
    assert b_key_id not in {k["key_id"] for k in a.get("/admin/keys").json()["items"]}
    assert a.delete(f"/admin/keys/{b_key_id}").status_code == 404
    assert b.get("/files").status_code == 200
    assert b_key_id not in {e["key_id"] for e in a.get("/admin/audit").json()["items"]}  # nor its audit

    assert a.delete(f"/files/{fid}").status_code == 204
    assert b.delete(f"/files/{b_fid}").status_code == 204
    a.close()
    b.close()


# --- limits --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[str]:
    """An API with small limits, on a queue of its own (no worker drains it)."""
    env = {
        "UPLOAD_RATE": "5/minute",
        "QUERY_RATE": "4/minute",
        "MAX_PENDING_FILES_PER_TENANT": "2",
        "QUEUE_NAME": "ingest-limits",
        "MAX_JSON_BYTES": "4096",
        "MAX_KEYS_PER_TENANT": "3",
    }
    proc, url = start_api(stack, "api-limits", env=env)
    yield url
    proc.stop()


def test_query_rate_limit_is_per_key(limited: str, stack: Stack) -> None:
    one, two = (stack.client(limited, tenant=f"rl-{uuid.uuid4().hex[:6]}", scopes="read") for _ in range(2))
    for _ in range(4):
        assert one.get("/search", params={"q": "rate"}).status_code == 200
    r = one.post("/query", json={"query": "rate", "k": 1})
    assert r.status_code == 429 and _code(r) == "rate_limited", r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert two.post("/query", json={"query": "rate", "k": 1}).status_code == 200  # another key: its own count
    assert one.get("/files").status_code == 200  # reading statuses is not a query
    for c in (one, two):
        c.close()


def test_upload_rate_limit(limited: str, stack: Stack) -> None:
    tenant = f"ru-{uuid.uuid4().hex[:6]}"
    with stack.client(limited, tenant=tenant, scopes="read,write") as c:
        statuses = []
        for _ in range(6):
            r = c.post("/upload", content=b"not multipart", headers={"content-type": "text/plain"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert _code(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert statuses == [400] * 5 + [429], statuses  # refused requests count too


def test_pending_files_per_tenant_are_capped(limited: str, stack: Stack) -> None:
    full, other = f"qf-{uuid.uuid4().hex[:6]}", f"qo-{uuid.uuid4().hex[:6]}"
    with stack.client(limited, tenant=full) as c, stack.client(limited, tenant=other) as o:
        r = upload(c, ("a.txt", _unique("first")), ("b.txt", _unique("second")), ("c.txt", _unique("third")))
        assert r.status_code == 429 and _code(r) == "tenant_queue_full" and r.headers["retry-after"], r.text
        assert c.get("/files").json()["total"] == 0  # all or nothing: none of the three was kept
        ids = [f["file_id"] for f in upload(c, ("a.txt", _unique("first")), ("b.txt", _unique("2"))).json()["files"]]
        assert c.get("/stats").json()["pending"] == 2
        r = upload(c, ("d.txt", _unique("fourth")))
        assert r.status_code == 429 and _code(r) == "tenant_queue_full"
        r = upload(o, ("o.txt", _unique("other tenant")))
        assert r.status_code == 202  # the others are not starved
        for fid in ids:  # deleting frees the tenant's places
            assert c.delete(f"/files/{fid}").status_code == 204
        r2 = upload(c, ("e.txt", _unique("fifth")))
        assert r2.status_code == 202
        assert o.delete(f"/files/{r.json()['files'][0]['file_id']}").status_code == 204
        assert c.delete(f"/files/{r2.json()['files'][0]['file_id']}").status_code == 204


def _active_keys(c: httpx.Client) -> list[str]:
    return [k["key_id"] for k in c.get("/admin/keys").json()["items"] if k["revoked_at"] is None]


def test_active_keys_per_tenant_are_capped(limited: str, stack: Stack) -> None:
    tenant, other = f"kc-{uuid.uuid4().hex[:6]}", f"ko-{uuid.uuid4().hex[:6]}"
    with stack.client(limited, tenant=tenant) as c:  # its own admin key is the first of 3
        ids = [c.post("/admin/keys", json={"name": f"k{i}"}).json()["key_id"] for i in range(2)]
        r = c.post("/admin/keys", json={"name": "one too many"})
        assert r.status_code == 409 and _code(r) == "key_limit_reached", r.text
        assert "3 active API keys" in r.json()["detail"]["message"] and "revoke" in r.json()["detail"]["message"]
        assert len(_active_keys(c)) == 3
        assert c.delete(f"/admin/keys/{ids[0]}").status_code == 204  # revoked keys do not count
        assert c.post("/admin/keys", json={"name": "in its place"}).status_code == 201
        assert c.post("/admin/keys", json={"name": "again too many"}).status_code == 409
    with stack.client(limited, tenant=other) as o:  # another tenant has its own places
        assert o.post("/admin/keys", json={"name": "mine"}).status_code == 201


def test_concurrent_creates_never_pass_the_key_cap(limited: str, stack: Stack) -> None:
    """20 creates at once for a tenant with 2 places left: counting before inserting would let all through."""
    tenant = f"kr-{uuid.uuid4().hex[:6]}"
    headers = stack.auth(tenant)

    def create(i: int) -> int:
        return httpx.post(f"{limited}/admin/keys", json={"name": f"burst {i}"}, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(create, range(20)))
    with stack.client(limited, tenant=tenant) as c:
        active = _active_keys(c)
        assert set(statuses) <= {201, 409} and len(active) <= 3, (statuses, active)
        assert len(active) == 1 + statuses.count(201)  # a refused create left no key behind
        while c.post("/admin/keys", json={"name": "after the burst"}).status_code == 201:
            pass
        assert len(_active_keys(c)) == 3  # and the places are all there once it is over


def test_the_key_cap_holds_for_creates_from_many_processes_at_once(stack: Stack) -> None:
    """20 creates at once, each through a MongoDB client of its own (as from 20 API processes): a count
    before the insert alone let all 20 through, each counting before the others had inserted. Counting
    again after the insert, each sees the others' keys and takes its own back out (all 20 may be
    refused); the places are free again afterwards."""
    tenant = f"kg-{uuid.uuid4().hex[:6]}"

    async def burst() -> tuple[list, int]:
        clients = [AsyncMongoClient(stack.env["MONGO_URL"], tz_aware=True) for _ in range(20)]
        try:
            await asyncio.gather(*(c.admin.command("ping") for c in clients))  # connected before the burst
            stores = [KeyStore(c, stack.env["MONGO_DB"]) for c in clients]
            creates = [s.create(tenant, f"k{i}", ["read"], cap=3, actor=Actor("test")) for i, s in enumerate(stores)]
            results = await asyncio.gather(*creates, return_exceptions=True)
            with contextlib.suppress(KeyLimitReached):
                while True:  # the places that refused creates took back are free again
                    await stores[0].create(tenant, "after the burst", ["read"], cap=3, actor=Actor("test"))
            return results, await stores[0].col.count_documents({"tenant": tenant, "revoked_at": None})
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    results, active_after = asyncio.run(burst())
    created = [r for r in results if not isinstance(r, KeyLimitReached)]
    assert all(isinstance(r, tuple) for r in created), results  # nothing but keys and refusals
    assert len(created) <= 3 and active_after == 3, (len(created), active_after)


def test_request_bodies_are_bounded_before_they_are_read(limited: str, stack: Stack) -> None:
    with stack.client(limited, scopes="read") as c:
        big = {"query": "x" * 5000, "k": 1}
        r = c.post("/query", json=big)
        assert r.status_code == 413 and _code(r) == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is cut off as it streams
            yield b'{"query": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        r = c.post("/query", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and _code(r) == "request_too_large"
        # a declared Content-Length over the limit is answered before a byte of the body is read
        host, port = limited.removeprefix("http://").split(":")
        head = (
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stack.key(scopes='read,write')}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {10**12}\r\n\r\n"
        )
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head.encode() + b"--x\r\n")
            answer = b""
            while b"request_too_large" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
            answer = answer.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413") and "request_too_large" in answer, answer


def test_a_request_refused_by_the_limit_does_not_count(stack: Stack) -> None:
    """A client that waits Retry-After gets through, however often it was refused meanwhile."""
    proc, url = start_api(stack, "api-window", env={"QUERY_RATE": "3/2second"})
    try:
        with stack.client(url, tenant=f"rw-{uuid.uuid4().hex[:6]}", scopes="read") as c:
            assert [c.get("/search", params={"q": "w"}).status_code for _ in range(3)] == [200] * 3
            refused = [c.get("/search", params={"q": "w"}) for _ in range(20)]  # hammering while refused
            assert {r.status_code for r in refused} == {429}
            time.sleep(int(refused[0].headers["retry-after"]) + 0.2)
            assert c.get("/search", params={"q": "w"}).status_code == 200
    finally:
        proc.stop()


def test_the_pending_cap_holds_across_concurrent_requests_of_a_tenant(limited: str, stack: Stack) -> None:
    """MAX_PENDING_FILES_PER_TENANT=2: a request still receiving its files counts against another's."""
    tenant = f"qc-{uuid.uuid4().hex[:6]}"
    started = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="slow.txt"\r\n\r\n'
        yield _unique("slow one") + b"\r\n"
        started.set()
        time.sleep(0.6)  # the other request arrives now, within the count's 1 s reuse
        yield b"--b--\r\n"

    with stack.client(limited, tenant=tenant) as c, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            c.post, "/upload", content=slow_body(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        started.wait(10)
        second = upload(c, ("x.txt", _unique("second")), ("y.txt", _unique("third")))
        answers = [first.result(30), second]
        assert sorted(r.status_code for r in answers) == [202, 429], [r.text for r in answers]
        assert c.get("/stats").json()["pending"] <= 2
        for f in c.get("/files").json()["items"]:
            c.delete(f"/files/{f['file_id']}")


def _boundary_body(*, close: bool) -> bytes:
    body = b'--z\r\nContent-Disposition: form-data; name="files"; filename="cut.txt"\r\n\r\n' + b"cut short " * 500
    return body + (b"\r\n--z--\r\n" if close else b"")


def test_a_body_without_its_closing_boundary_is_400_and_leaves_nothing(
    stack: Stack, api_url: str, data_dir: Path
) -> None:
    tenant = f"tr-{uuid.uuid4().hex[:6]}"
    before = set((data_dir / "uploads").iterdir())
    with stack.client(api_url, tenant=tenant) as c:
        r = c.post(
            "/upload", content=_boundary_body(close=False), headers={"content-type": "multipart/form-data; boundary=z"}
        )
        assert r.status_code == 400 and _code(r) == "truncated_multipart", r.text
        assert c.get("/files").json()["total"] == 0
        assert c.get("/stats").json()["pending"] == 0
        ok = c.post(
            "/upload", content=_boundary_body(close=True), headers={"content-type": "multipart/form-data; boundary=z"}
        )
        assert ok.status_code == 202  # the same body, whole
        c.delete(f"/files/{ok.json()['files'][0]['file_id']}")
    assert set((data_dir / "uploads").iterdir()) == before  # no .part file, no directory


def test_a_client_killed_mid_body_leaves_nothing(stack: Stack, api_url: str, data_dir: Path) -> None:
    tenant = f"tk-{uuid.uuid4().hex[:6]}"
    before = set((data_dir / "uploads").iterdir())
    host, port = api_url.removeprefix("http://").split(":")
    body = _boundary_body(close=True)
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stack.key(tenant)}\r\n"
        f"Content-Type: multipart/form-data; boundary=z\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.5)  # the file is being received
    # the socket is closed: the client is gone
    with stack.client(api_url, tenant=tenant) as c:
        deadline = time.monotonic() + 10
        while c.get("/files").json()["total"] or set((data_dir / "uploads").iterdir()) != before:
            assert time.monotonic() < deadline, c.get("/files").json()
            time.sleep(0.2)


# --- hostile input ---------------------------------------------------------------------------------------------


def test_an_upload_that_lies_about_its_content_type(client: httpx.Client) -> None:
    pdf = make_pdf(["A PDF pretending to be text."])
    r = client.post("/upload", files=[("files", ("notes.txt", pdf, "text/plain"))])
    assert r.status_code == 415 and _code(r) == "content_type_mismatch", r.text
    html = b"<!DOCTYPE html><html><body><script>alert(1)</script><p>Hi</p></body></html>"
    r = client.post("/upload", files=[("files", ("report.pdf", html, "application/pdf"))])
    assert r.status_code == 415 and _code(r) == "content_type_mismatch", r.text


def test_validation_errors_are_coded_422s(client: httpx.Client) -> None:
    r = client.get("/files/not-a-uuid")
    assert r.status_code == 422 and _code(r) == "invalid_file_id"
    r = client.get("/files", params={"limit": "many"})
    assert r.status_code == 422 and _code(r) == "invalid_request" and "limit" in r.json()["detail"]["message"]
    r = client.delete("/admin/keys/NOT-A-KEY-ID")
    assert r.status_code == 422 and _code(r) == "invalid_key_id"
    r = client.post("/admin/keys", json={"name": "x", "scopes": ["root"]})
    assert r.status_code == 422 and _code(r) == "invalid_request"
    r = client.post("/admin/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and _code(r) == "invalid_request"
    assert r.headers["x-content-type-options"] == "nosniff"


DEEP = 16_000  # far past Python's recursion limit: json.loads raises RecursionError


def _nested() -> str:
    return "[" * DEEP + "]" * DEEP


def test_deeply_nested_json_is_a_coded_422(client: httpx.Client, stack: Stack, api_url: str) -> None:
    """Nesting past the recursion limit: the upload's metadata parts were a 500 (RecursionError in
    json.loads); JSON bodies a 422 that called them invalid UTF-8."""
    data = [("files", ("deep.txt", _unique("deeply nested metadata"), "text/plain"))]
    total = client.get("/files").json()["total"]
    for part in ("metadata", "file_metadata"):
        with stack.client(api_url) as fresh:  # a 500 closed the connection
            r = fresh.post("/upload", files=[*data, (part, (None, "[" * DEEP))])
        assert r.status_code == 422 and _code(r) == "invalid_metadata", r.text
        assert "nested too deeply" in r.json()["detail"]["message"]
    assert client.get("/files").json()["total"] == total
    in_filters = '{"query": "x", "filters": {"metadata": {"a": ' + _nested() + "}}}"
    in_query = '{"query": ' + _nested() + "}"
    for path in ("/query", "/generate-text-with-context", "/admin/keys"):
        for body in (in_filters, in_query, _nested()):
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and _code(r) == "invalid_request", (path, r.text)
            assert "nested too deeply" in r.json()["detail"]["message"], r.text


# --- AUTH=disabled, the CLI, secrets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [("127.0.0.1:8000", True), ("127.0.0.5:1", True), ("[::1]:8000", True), ("localhost:8000", True),
     ("unix:/run/docproc.sock", True), ("0.0.0.0:8000", False), ("[::]:8000", False), ("10.0.0.4:8000", False),
     ("api.example.com:80", False), (":8000", False)],
)  # fmt: skip
def test_auth_disabled_only_on_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback
    settings = Settings(_env_file=None, auth="disabled", api_bind=bind)
    if loopback:
        check_bind(settings)
    else:
        with pytest.raises(RuntimeError, match="AUTH=disabled"):
            check_bind(settings)
    check_bind(Settings(_env_file=None, auth="enabled", api_bind=bind))  # with keys, any bind


def test_api_refuses_to_start_with_auth_disabled_on_a_public_bind(stack: Stack) -> None:
    with pytest.raises(RuntimeError, match="AUTH=disabled"):
        start_api(stack, "api-open", env={"AUTH": "disabled", "API_BIND": "0.0.0.0:8000"})


def _outward_address() -> str:
    """This machine's address on its first non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
        return s.getsockname()[0]


def test_auth_disabled_answers_only_on_loopback_whatever_api_bind_says(stack: Stack) -> None:
    address = _outward_address()
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine has no non-loopback interface to listen on")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    # API_BIND claims loopback, the server listens everywhere: the guard must look at the real socket
    proc = stack.spawn("api-lying-bind", argv, env={"AUTH": "disabled", "API_BIND": "127.0.0.1:8000"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.popen.poll() is None, proc.tail()
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/files", timeout=10).status_code == 200
        remote = httpx.get(f"http://{address}:{port}/files", timeout=10)
        assert remote.status_code == 403 and _code(remote) == "remote_access_refused", remote.text
        assert httpx.get(f"http://{address}:{port}/health", timeout=10).status_code == 403
    finally:
        proc.stop()


def test_auth_disabled_on_loopback_is_the_default_tenant(stack: Stack) -> None:
    proc, url = start_api(stack, "api-noauth", env={"AUTH": "disabled", "API_BIND": "127.0.0.1:8000"})
    try:
        r = httpx.get(f"{url}/stats", timeout=10)
        assert r.status_code == 200 and r.json()["tenant"] == "default"
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
    finally:
        proc.stop()


def test_admin_cli_creates_lists_and_revokes(api_url: str, stack: Stack) -> None:
    env = {**os.environ, **stack.env}
    cli = [sys.executable, "-m", "app.cli.keys"]
    tenant = f"cli-{uuid.uuid4().hex[:6]}"
    out = subprocess.run([*cli, "create", "--tenant", tenant, "--name", "ci", "--scopes", "read"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    key_id, _ = parse_key(key)
    assert "shown only now" in out.stderr and key not in out.stderr
    r = httpx.get(f"{api_url}/stats", headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200 and r.json()["tenant"] == tenant
    listed = subprocess.run([*cli, "list", "--tenant", tenant, "--json"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    (doc,) = json.loads(listed.stdout)
    assert doc["_id"] == key_id and doc["scopes"] == ["read"] and "hash" not in doc
    assert key.split("_", 2)[2] not in listed.stdout
    revoked = subprocess.run([*cli, "revoke", key_id], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{api_url}/stats", headers={"X-API-Key": key}, timeout=10).status_code == 401
    # both are in the tenant's audit, by `cli`, and each was logged as a structured line
    with stack.client(api_url, tenant=tenant) as admin:
        entries = [e for e in _audit(admin) if e[1] == key_id]
    assert entries == [("key.revoked", key_id, "cli", None, tenant), ("key.created", key_id, "cli", None, tenant)]
    assert [d["action"] for d in _audit_log_lines(out.stderr + revoked.stderr, key_id)] == [
        "key.created",
        "key.revoked",
    ]
    bad = subprocess.run([*cli, "create", "--tenant", "Bad/Tenant", "--name", "x"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "--tenant" in bad.stderr
    with pytest.raises(ValueError):
        parse_scopes("read,root")


def _audit(c: httpx.Client, **params: int) -> list[tuple]:
    r = c.get("/admin/audit", params=params)
    assert r.status_code == 200, r.text
    return [(e["action"], e["key_id"], e["actor"], e["request_id"], e["tenant"]) for e in r.json()["items"]]


def _audit_log_lines(text: str, key_id: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"app.audit"' in line]
    return [line for line in lines if line.get("key_id") == key_id]


def test_key_creation_and_revocation_are_audited(api_url: str, stack: Stack) -> None:
    a_name, b_name = f"aa-{uuid.uuid4().hex[:6]}", f"ab-{uuid.uuid4().hex[:6]}"
    with stack.client(api_url, tenant=a_name) as a, stack.client(api_url, tenant=b_name) as b:
        admin_id = parse_key(stack.key(a_name))[0]  # made as the CLI makes keys: audited as `cli`
        r = a.post("/admin/keys", json={"name": "audited", "scopes": ["read"]}, headers={"X-Request-ID": "kc-1"})
        key_id = r.json()["key_id"]
        assert a.delete(f"/admin/keys/{key_id}", headers={"X-Request-ID": "kr-1"}).status_code == 204
        assert a.delete(f"/admin/keys/{key_id}").status_code == 204  # revoked already: no second entry
        b_key = b.post("/admin/keys", json={"name": "b's"}).json()["key_id"]

        assert _audit(a) == [  # newest first
            ("key.revoked", key_id, admin_id, "kr-1", a_name),
            ("key.created", key_id, admin_id, "kc-1", a_name),
            ("key.created", admin_id, "cli", None, a_name),
        ]
        assert a.get("/admin/audit").json()["total"] == 3
        assert _audit(a, limit=1, offset=1) == [("key.created", key_id, admin_id, "kc-1", a_name)]
        b_entries = _audit(b)  # B sees its own entries only
        assert {e[1] for e in b_entries} == {b_key, parse_key(stack.key(b_name))[0]}
        assert {e[4] for e in b_entries} == {b_name}
        assert a.get("/admin/audit", params={"limit": 0}).status_code == 422
    log = (stack.root / "logs" / "api.log").read_text(errors="replace")
    lines = _audit_log_lines(log, key_id)  # one structured line per event
    assert [(d["action"], d["tenant"], d["actor"], d["request_id"]) for d in lines] == [
        ("key.created", a_name, admin_id, "kc-1"),
        ("key.revoked", a_name, admin_id, "kr-1"),
    ]


def test_the_admin_cli_keeps_to_the_key_cap(stack: Stack) -> None:
    env = {**os.environ, **stack.env, "MAX_KEYS_PER_TENANT": "2"}
    tenant = f"clicap-{uuid.uuid4().hex[:6]}"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli.keys", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    first, second = (cli("create", "--tenant", tenant, "--name", f"k{i}") for i in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    refused = cli("create", "--tenant", tenant, "--name", "k2")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "MAX_KEYS_PER_TENANT" in refused.stderr and "revoke" in refused.stderr
    assert cli("revoke", parse_key(first.stdout.strip())[0]).returncode == 0  # revoked keys do not count
    assert cli("create", "--tenant", tenant, "--name", "k3").returncode == 0


def test_redact() -> None:
    text = redact(
        f"mongodb://docproc:{SECRET_MARK}@mongo:27017/docproc redis://:{SECRET_MARK}@valkey:6379/0 "
        f"Authorization: Bearer {SECRET_MARK} dp_0123456789ab_{SECRET_MARK}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    )
    assert SECRET_MARK not in text
    assert "mongodb://docproc:***@mongo:27017" in text and "dp_0123456789ab_***" in text
    assert redact("postgresql://postgres@127.0.0.1:5432/postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_log_lines_never_carry_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter("api"))
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot reach %s", f"postgresql://docproc:{SECRET_MARK}@db:5432/docproc")
        try:
            raise ConnectionError(f"redis://:{SECRET_MARK}@valkey:6379/0 refused")
        except ConnectionError:
            logger.exception("queue down")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2 and SECRET_MARK not in stream.getvalue()
    assert "docproc:***@db" in lines[0]["message"] and "ConnectionError" in lines[1]["exc_info"]


def test_the_api_log_holds_no_key(api_url: str, stack: Stack) -> None:
    """After every test above, the session API's log has neither a key's secret nor the metrics token."""
    log = (stack.root / "logs" / "api.log").read_text(errors="replace")
    for key in stack.keys.values():
        assert key.split("_", 2)[2] not in log
    assert METRICS_TOKEN not in log
