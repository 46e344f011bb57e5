"""Limits through the real stack: rate limits per key, pending files and active keys per tenant
(under concurrency too), and request bodies bounded before they are read.

The session API runs with AUTH=enabled (tests/fixtures/stack.py); keys are made straight in
MongoDB by `Stack.key` (as `python -m app.cli.keys create` does) or through /admin/keys."""

import concurrent.futures
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures.api import error_code, unique, upload
from tests.fixtures.stack import Stack, start_api


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
    assert r.status_code == 429 and error_code(r) == "rate_limited", r.text
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
                assert error_code(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert statuses == [400] * 5 + [429], statuses  # refused requests count too


def test_pending_files_per_tenant_are_capped(limited: str, stack: Stack) -> None:
    full, other = f"qf-{uuid.uuid4().hex[:6]}", f"qo-{uuid.uuid4().hex[:6]}"
    with stack.client(limited, tenant=full) as c, stack.client(limited, tenant=other) as o:
        r = upload(c, ("a.txt", unique("first")), ("b.txt", unique("second")), ("c.txt", unique("third")))
        assert r.status_code == 429 and error_code(r) == "tenant_queue_full" and r.headers["retry-after"], r.text
        assert c.get("/files").json()["total"] == 0  # all or nothing: none of the three was kept
        ids = [f["file_id"] for f in upload(c, ("a.txt", unique("first")), ("b.txt", unique("2"))).json()["files"]]
        assert c.get("/stats").json()["pending"] == 2
        r = upload(c, ("d.txt", unique("fourth")))
        assert r.status_code == 429 and error_code(r) == "tenant_queue_full"
        r = upload(o, ("o.txt", unique("other tenant")))
        assert r.status_code == 202  # the others are not starved
        for fid in ids:  # deleting frees the tenant's places
            assert c.delete(f"/files/{fid}").status_code == 204
        r2 = upload(c, ("e.txt", unique("fifth")))
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
        assert r.status_code == 409 and error_code(r) == "key_limit_reached", r.text
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


def test_request_bodies_are_bounded_before_they_are_read(limited: str, stack: Stack) -> None:
    with stack.client(limited, scopes="read") as c:
        big = {"query": "x" * 5000, "k": 1}
        r = c.post("/query", json=big)
        assert r.status_code == 413 and error_code(r) == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is cut off as it streams
            yield b'{"query": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        r = c.post("/query", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and error_code(r) == "request_too_large"
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
        yield unique("slow one") + b"\r\n"
        started.set()
        time.sleep(0.6)  # the other request arrives now, within the count's 1 s reuse
        yield b"--b--\r\n"

    with stack.client(limited, tenant=tenant) as c, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            c.post, "/upload", content=slow_body(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        started.wait(10)
        second = upload(c, ("x.txt", unique("second")), ("y.txt", unique("third")))
        answers = [first.result(30), second]
        assert sorted(r.status_code for r in answers) == [202, 429], [r.text for r in answers]
        assert c.get("/stats").json()["pending"] <= 2
        for f in c.get("/files").json()["items"]:
            c.delete(f"/files/{f['file_id']}")
