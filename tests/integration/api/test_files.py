"""GET /files (pages, status filter), GET and DELETE /files/{file_id}."""

import uuid
from pathlib import Path

import httpx
import psycopg

from tests.fixtures.api import upload, wait_final
from tests.fixtures.worker import run_worker


def test_list_files_paginates_and_filters_by_status(client: httpx.Client) -> None:
    r = upload(client, ("list-a.txt", b"alpha list entry text"), ("list-b.txt", b"beta list entry text"))
    ids = {f["file_id"] for f in r.json()["files"]}
    queued = client.get("/files", params={"status": "queued", "limit": 500}).json()
    assert ids <= {f["file_id"] for f in queued["items"]}
    run_worker()
    wait_final(client, list(ids))
    page = client.get("/files", params={"limit": 1, "offset": 0}).json()
    assert len(page["items"]) == 1 and page["total"] >= 2 and page["limit"] == 1
    embedded = client.get("/files", params={"status": "embedded", "limit": 500}).json()["items"]
    assert ids <= {f["file_id"] for f in embedded}
    assert client.get("/files", params={"status": "bogus"}).status_code == 422


def test_unknown_and_malformed_ids(client: httpx.Client) -> None:
    r = client.get(f"/files/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["detail"]["code"] == "file_not_found"
    assert client.get("/files/not-a-uuid").status_code == 422
    assert client.delete(f"/files/{uuid.uuid4()}").status_code == 404


def test_delete_removes_bytes_status_and_chunks(client: httpx.Client, data_dir: Path, stack) -> None:
    r = upload(client, ("delete-me.txt", b"The lighthouse keeper logs every passing ship in a blue ledger."))
    fid = r.json()["files"][0]["file_id"]
    run_worker()
    assert wait_final(client, [fid])[fid]["status"] == "embedded"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE file_id = %s", (fid,)).fetchone()[0] >= 1
    assert (data_dir / "uploads" / fid).exists()

    assert client.delete(f"/files/{fid}").status_code == 204
    assert client.get(f"/files/{fid}").status_code == 404
    assert not (data_dir / "uploads" / fid).exists()
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE file_id = %s", (fid,)).fetchone()[0] == 0
    hits = client.post("/query", json={"query": "lighthouse keeper ledger", "k": 10}).json()["results"]
    assert fid not in {h["file_id"] for h in hits}
