"""Validation errors are coded 422s, nesting past the recursion limit included."""

import httpx

from tests.fixtures.api import error_code, unique
from tests.fixtures.stack import Stack


def test_validation_errors_are_coded_422s(client: httpx.Client) -> None:
    r = client.get("/files/not-a-uuid")
    assert r.status_code == 422 and error_code(r) == "invalid_file_id"
    r = client.get("/files", params={"limit": "many"})
    assert r.status_code == 422 and error_code(r) == "invalid_request" and "limit" in r.json()["detail"]["message"]
    r = client.delete("/admin/keys/NOT-A-KEY-ID")
    assert r.status_code == 422 and error_code(r) == "invalid_key_id"
    r = client.post("/admin/keys", json={"name": "x", "scopes": ["root"]})
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    r = client.post("/admin/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    assert r.headers["x-content-type-options"] == "nosniff"


DEEP = 16_000  # far past Python's recursion limit: json.loads raises RecursionError


def _nested() -> str:
    return "[" * DEEP + "]" * DEEP


def test_deeply_nested_json_is_a_coded_422(client: httpx.Client, stack: Stack, api_url: str) -> None:
    """Nesting past the recursion limit: the upload's metadata parts were a 500 (RecursionError in
    json.loads); JSON bodies a 422 that called them invalid UTF-8."""
    data = [("files", ("deep.txt", unique("deeply nested metadata"), "text/plain"))]
    total = client.get("/files").json()["total"]
    for part in ("metadata", "file_metadata"):
        with stack.client(api_url) as fresh:  # a 500 closed the connection
            r = fresh.post("/upload", files=[*data, (part, (None, "[" * DEEP))])
        assert r.status_code == 422 and error_code(r) == "invalid_metadata", r.text
        assert "nested too deeply" in r.json()["detail"]["message"]
    assert client.get("/files").json()["total"] == total
    in_filters = '{"query": "x", "filters": {"metadata": {"a": ' + _nested() + "}}}"
    in_query = '{"query": ' + _nested() + "}"
    for path in ("/query", "/generate-text-with-context", "/admin/keys"):
        for body in (in_filters, in_query, _nested()):
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and error_code(r) == "invalid_request", (path, r.text)
            assert "nested too deeply" in r.json()["detail"]["message"], r.text
