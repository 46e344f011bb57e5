"""Tenant isolation across every endpoint: files, search, answers, stats, dedup, the interaction
log, keys and their audit.

The session API runs with AUTH=enabled (tests/fixtures/stack.py); keys are made straight in
MongoDB by `Stack.key` (as `python -m app.cli.keys create` does) or through /admin/keys."""

import uuid

from pymongo import MongoClient

from app.api.auth import parse_key
from tests.fixtures.api import error_code, upload, wait_final
from tests.fixtures.stack import Stack
from tests.fixtures.worker import run_worker


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
    assert r.status_code == 404 and error_code(r) == "file_not_found"
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
