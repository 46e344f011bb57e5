"""The key-management CLI (python -m app.cli.keys) against the stack's MongoDB: create, list, revoke,
the per-tenant cap, and the audit it leaves."""

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from app.api.auth import parse_key, parse_scopes
from tests.fixtures import ROOT
from tests.fixtures.api import audit_entries, audit_log_lines
from tests.fixtures.stack import Stack


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
        entries = [e for e in audit_entries(admin) if e[1] == key_id]
    assert entries == [("key.revoked", key_id, "cli", None, tenant), ("key.created", key_id, "cli", None, tenant)]
    assert [d["action"] for d in audit_log_lines(out.stderr + revoked.stderr, key_id)] == [
        "key.created",
        "key.revoked",
    ]
    bad = subprocess.run([*cli, "create", "--tenant", "Bad/Tenant", "--name", "x"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "--tenant" in bad.stderr
    with pytest.raises(ValueError):
        parse_scopes("read,root")


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
