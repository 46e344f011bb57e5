"""API keys and scopes through the real stack: which operations need what, malformed, wrong and
revoked keys, the metrics token, AUTH=disabled only on loopback, and no key in the API's log.

The session API runs with AUTH=enabled (tests/fixtures/stack.py); keys are made straight in
MongoDB by `Stack.key` (as `python -m app.cli.keys create` does) or through /admin/keys."""

import ipaddress
import socket
import sys
import time
import uuid

import httpx
import pytest

from app.api.auth import parse_key
from devstack.servers import free_port
from tests.fixtures.api import error_code, unique, upload
from tests.fixtures.stack import METRICS_TOKEN, Stack, start_api


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
        assert error_code(r) == "unauthorized" and r.headers["www-authenticate"] == "Bearer", (method, path)
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
        assert r.status_code == 401 and error_code(r) == "unauthorized", r.text


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
    fid = upload(writer, ("scoped.txt", unique("Scopes decide who may write."))).json()["files"][0]["file_id"]

    assert reader.get(f"/files/{fid}").status_code == 200
    assert reader.post("/query", json={"query": "scopes", "k": 1}).status_code == 200
    r = upload(reader, ("nope.txt", unique("A reader cannot upload.")))
    assert r.status_code == 403 and error_code(r) == "forbidden" and "'write'" in r.json()["detail"]["message"]
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
        assert r.status_code == 401 and error_code(r) == "unauthorized"
        assert admin.get("/system-metrics").status_code == 200  # host metrics: admin keys may look
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    r = httpx.get(f"{api_url}/metrics", headers=bearer, timeout=10)
    assert r.status_code == 200 and "docproc_files" in r.text and 'tenant="' not in r.text
    assert httpx.get(f"{api_url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(f"{api_url}/system-metrics", headers=bearer, timeout=10).status_code == 200


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
        assert remote.status_code == 403 and error_code(remote) == "remote_access_refused", remote.text
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


@pytest.mark.after_all
def test_the_api_log_holds_no_key(api_url: str, stack: Stack) -> None:
    """After every test above, the session API's log has neither a key's secret nor the metrics token."""
    log = (stack.root / "logs" / "api.log").read_text(errors="replace")
    for key in stack.keys.values():
        assert key.split("_", 2)[2] not in log
    assert METRICS_TOKEN not in log
