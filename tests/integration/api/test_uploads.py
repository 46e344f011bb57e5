"""POST /upload refusing what it must, and keeping nothing when it does: hostile filenames, types the
content contradicts, oversize and empty files, cut-off bodies, invalid metadata."""

import json
import os
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.intake import filetypes
from app.intake.filenames import MAX_NAME_CHARS
from tests.fixtures.api import error_code, upload, wait_final
from tests.fixtures.documents import make_docx, make_pdf
from tests.fixtures.stack import Stack
from tests.fixtures.worker import run_worker


def _raw_upload(client: httpx.Client, filename: bytes, data: bytes) -> httpx.Response:
    """A multipart body written by hand, so the filename bytes reach the server as they are."""
    boundary = b"hostileboundary1234"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return client.post(
        "/upload", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"}
    )


@pytest.mark.parametrize(
    "filename",
    [
        b"../../etc/passwd",
        b"..%2F..%2Fescape.txt",
        b"nul\x00byte.txt",
        b"x" * 300 + b".txt",
        "ｕｎｉｃｏｄｅ／．．／trick.txt".encode(),
        "\u202egnp.txt".encode(),
        b"/absolute/path.txt",
    ],
)
def test_hostile_filenames_stay_inside_the_upload_dir(client: httpx.Client, data_dir: Path, filename: bytes) -> None:
    r = _raw_upload(client, filename, b"Harmless text about hostile names and safe storage: " + filename.hex().encode())
    assert r.status_code == 202, r.text
    fid = r.json()["files"][0]["file_id"]
    stored = list((data_dir / "uploads" / fid).iterdir())
    assert len(stored) == 1
    path = stored[0].resolve()
    assert path.parent == (data_dir / "uploads" / fid).resolve()
    assert len(path.name) <= MAX_NAME_CHARS and "\x00" not in path.name and ".." not in path.name
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "embedded" and "\x00" not in doc["filename"]
    assert not Path("/etc/passwd.txt").exists()


def test_oversize_upload_is_refused_and_leaves_nothing(client: httpx.Client, data_dir: Path) -> None:
    before = set((data_dir / "uploads").iterdir()) if (data_dir / "uploads").exists() else set()
    total_before = client.get("/files").json()["total"]
    big = b"word " * (700 * 1024)  # 3.5 MB, limit is 2 MB in the tests
    try:
        r = upload(client, ("small.txt", b"a small file that was fine"), ("big.txt", big))
        assert r.status_code == 413, r.text
        assert r.json()["detail"]["code"] == "file_too_large"
    except httpx.WriteError:
        pass  # the server may answer and close before the client has sent everything
    after = set((data_dir / "uploads").iterdir()) if (data_dir / "uploads").exists() else set()
    assert after == before
    assert client.get("/files").json()["total"] == total_before


def test_unsupported_and_empty_files_are_refused(client: httpx.Client) -> None:
    r = upload(client, ("image.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100))
    assert r.status_code == 415 and "application/pdf" in r.json()["detail"]["message"]
    r = upload(client, ("empty.txt", b""))
    assert r.status_code == 422 and r.json()["detail"]["code"] == "empty_file"
    assert client.post("/upload", content=b"x", headers={"content-type": "text/plain"}).status_code == 400


def test_bad_inputs_refused_at_upload(client: httpx.Client) -> None:
    r = upload(client, ("garbage.txt", os.urandom(4096)))
    assert r.status_code == 415 and r.json()["detail"]["code"] == "unsupported_type"
    message = r.json()["detail"]["message"]
    assert filetypes.DOCX in message and filetypes.PPTX in message and filetypes.HTML in message
    r = upload(client, ("empty.docx", b""))
    assert r.status_code == 422 and r.json()["detail"]["code"] == "empty_file"


def test_content_type_mismatch_refused_at_upload(client: httpx.Client) -> None:
    r = upload(client, ("report.pdf", make_docx(uuid.uuid4().hex)))
    assert r.status_code == 415, r.text
    assert r.json()["detail"]["code"] == "content_type_mismatch"
    assert "report.pdf" in r.json()["detail"]["message"]


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
        assert r.status_code == 400 and error_code(r) == "truncated_multipart", r.text
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


def test_an_upload_that_lies_about_its_content_type(client: httpx.Client) -> None:
    pdf = make_pdf(["A PDF pretending to be text."])
    r = client.post("/upload", files=[("files", ("notes.txt", pdf, "text/plain"))])
    assert r.status_code == 415 and error_code(r) == "content_type_mismatch", r.text
    html = b"<!DOCTYPE html><html><body><script>alert(1)</script><p>Hi</p></body></html>"
    r = client.post("/upload", files=[("files", ("report.pdf", html, "application/pdf"))])
    assert r.status_code == 415 and error_code(r) == "content_type_mismatch", r.text


def test_invalid_upload_metadata_is_refused_and_nothing_is_kept(client: httpx.Client) -> None:
    total = client.get("/files").json()["total"]
    data = [("files", ("meta.txt", b"text about metadata validation", "text/plain"))]
    cases = [
        ("metadata", "{not json"),
        ("metadata", "[1, 2]"),
        ("metadata", json.dumps({"a": {"nested": 1}})),
        ("metadata", json.dumps({"a": [{"x": 1}]})),
        ("metadata", json.dumps({"$where": 1})),
        ("metadata", json.dumps({"a.b": 1})),
        ("metadata", json.dumps({"big": "x" * (17 * 1024)})),
        ("metadata", json.dumps({"n": 10**30})),
        ("metadata", json.dumps({"s": "a\x00b"})),
        ("metadata", json.dumps({"s": "\ud800"})),
        ("file_metadata", json.dumps({"other.txt": {"a": 1}})),
        ("file_metadata", json.dumps({"meta.txt": 5})),
    ]
    for name, value in cases:
        r = client.post("/upload", files=[*data, (name, (None, value))])
        assert r.status_code == 422, (name, value, r.text)
        assert r.json()["detail"]["code"] == "invalid_metadata", r.text
    r = client.post("/upload", files=[*data, ("metadata", (None, "{}")), ("metadata", (None, "{}"))])
    assert r.status_code == 422 and "more than once" in r.json()["detail"]["message"]
    assert client.get("/files").json()["total"] == total
