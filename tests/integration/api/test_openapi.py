"""The OpenAPI schema and its docs page."""

import httpx


def test_openapi_docs(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/upload", "/files", "/files/{file_id}", "/query", "/health"} <= set(paths)
