"""The MCP server at /mcp, driven by the `mcp` SDK's own client over streamable HTTP against the real
stack: tools and their schemas, search and ask over uploaded documents, documents as resources,
scopes, tenants, errors with the API's codes, and keys refused at the transport."""

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pymongo.errors
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import CallToolResult, TextResourceContents
from pymongo import MongoClient

from app.api.errors import dependency_name
from app.stores.audit import CLI
from app.stores.keys import SyncKeyStore
from tests.fixtures.api import upload, wait_final
from tests.fixtures.llm_server import FakeLLM
from tests.fixtures.stack import Stack, start_api
from tests.fixtures.worker import run_worker

T = TypeVar("T")
TOOLS = {"search", "ask", "list_documents", "get_document", "get_chunks", "upload_document", "delete_document"}
LIGHTHOUSE = (
    "The lighthouse keeper's log for the winter of 1893. The lamp at Skerryvore burned paraffin oil and its "
    "clockwork rotation was wound every four hours. Gales broke two panes of the lantern glass in January; "
    "the keeper replaced them with spare panes kept in the oil store. Code word MAREWIND-77."
)
ORCHARD = (
    "Orchard maintenance plan. The apple trees are pruned in late winter, the pear trees after harvest. "
    "Codling moth traps are checked weekly from May. Code word PIPPINFROST-12."
)


def session_call(url: str, key: str | None, fn: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Run `fn` with an initialised SDK client session of `url`/mcp authenticated by `key`."""

    async def main() -> T:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (
            httpx.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await fn(session)

    return asyncio.run(main())


def call(url: str, key: str, tool: str, **arguments: Any) -> CallToolResult:
    return session_call(url, key, lambda s: s.call_tool(tool, arguments))


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.isError, result.content
    assert result.structuredContent is not None
    assert json.loads(result.content[0].text) == result.structuredContent  # type: ignore[union-attr]
    return result.structuredContent


def error_code(result: CallToolResult) -> str:
    assert result.isError, result.structuredContent
    text = result.content[0].text  # type: ignore[union-attr]
    code, _, message = text.partition(": ")
    assert message, text
    assert not code.startswith("Error"), text
    return code


@pytest.fixture(scope="module")
def tenants(stack: Stack, api_url: str) -> Iterator[dict[str, Any]]:
    """Tenant A with a lighthouse log, tenant B with an orchard plan, both embedded."""
    run = uuid.uuid4().hex[:6]
    a, b = f"mcp-a-{run}", f"mcp-b-{run}"
    ids = {}
    for tenant, name, text in ((a, "lighthouse.txt", LIGHTHOUSE), (b, "orchard.md", ORCHARD)):
        with stack.client(api_url, tenant=tenant) as client:
            r = upload(client, (name, text.encode()))
            assert r.status_code == 202, r.text
            ids[tenant] = r.json()["files"][0]["file_id"]
    run_worker()
    for tenant in (a, b):
        with stack.client(api_url, tenant=tenant) as client:
            assert wait_final(client, [ids[tenant]])[ids[tenant]]["status"] == "embedded"
    yield {
        "a": a,
        "b": b,
        "a_file": ids[a],
        "b_file": ids[b],
        "a_key": stack.key(a, "read,write"),
        "b_key": stack.key(b, "read,write"),
        "a_read": stack.key(a, "read"),
    }


def test_tools_are_listed_with_descriptions_and_schemas(api_url: str, tenants: dict) -> None:
    listed = session_call(api_url, tenants["a_read"], lambda s: s.list_tools())
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.inputSchema["type"] == "object"
        assert tool.outputSchema is not None
    assert tools["search"].inputSchema["required"] == ["query"]
    assert set(tools["search"].inputSchema["properties"]) == {"query", "k", "mode", "filters"}
    assert set(tools["upload_document"].inputSchema["required"]) == {"name", "content_base64"}
    assert "results" in tools["search"].outputSchema["properties"]
    templates = session_call(api_url, tenants["a_read"], lambda s: s.list_resource_templates())
    assert [t.uriTemplate for t in templates.resourceTemplates] == ["docproc://documents/{document_id}"]


def test_search_finds_the_uploaded_document(api_url: str, tenants: dict) -> None:
    out = ok(call(api_url, tenants["a_read"], "search", query="lantern glass broken by gales", k=3))
    assert out["mode"] == "hybrid"
    assert out["results"][0]["file_id"] == tenants["a_file"]
    assert "Skerryvore" in out["results"][0]["text"]
    by_words = ok(call(api_url, tenants["a_read"], "search", query="MAREWIND-77", mode="keyword", k=3))
    assert [r["file_id"] for r in by_words["results"]] == [tenants["a_file"]]
    filtered = ok(call(api_url, tenants["a_read"], "search", query="lamp", filters={"filename": "nothing-*.pdf"}, k=3))
    assert filtered["results"] == []


def test_ask_returns_an_answer_with_citations(api_url: str, tenants: dict) -> None:
    out = ok(call(api_url, tenants["a_read"], "ask", question="What broke the panes of the lantern glass?"))
    assert out["generator"] == "extractive"
    assert out["answer"]
    assert out["citations"], out
    assert {c["file_id"] for c in out["citations"]} == {tenants["a_file"]}
    numbers = {p["n"] for p in out["passages"]}
    assert {c["n"] for c in out["citations"]} <= numbers


def test_documents_can_be_listed_read_and_paged(api_url: str, tenants: dict) -> None:
    key, fid = tenants["a_read"], tenants["a_file"]
    listed = ok(call(api_url, key, "list_documents", name="LIGHT*.TXT"))
    assert [d["file_id"] for d in listed["items"]] == [fid] and listed["total"] == 1
    assert ok(call(api_url, key, "list_documents", name="orchard*"))["items"] == []
    assert ok(call(api_url, key, "list_documents", status="failed"))["total"] == 0
    doc = ok(call(api_url, key, "get_document", document_id=fid))
    assert doc["status"] == "embedded" and doc["filename"] == "lighthouse.txt" and doc["chunk_count"] >= 1
    chunks = ok(call(api_url, key, "get_chunks", document_id=fid, limit=1))
    assert chunks["total"] == doc["chunk_count"] and len(chunks["chunks"]) == 1
    assert chunks["chunks"][0]["chunk_index"] == 0 and "lighthouse keeper" in chunks["chunks"][0]["text"]
    past = ok(call(api_url, key, "get_chunks", document_id=fid, offset=chunks["total"]))
    assert past["chunks"] == []


def test_documents_are_resources_with_their_indexed_text(api_url: str, tenants: dict) -> None:
    uri = f"docproc://documents/{tenants['a_file']}"

    async def read(s: ClientSession) -> tuple[Any, Any]:
        return await s.list_resources(), await s.read_resource(uri)  # type: ignore[arg-type]

    listed, read_back = session_call(api_url, tenants["a_read"], read)
    assert [str(r.uri) for r in listed.resources] == [uri]
    assert listed.resources[0].name == "lighthouse.txt"
    content = read_back.contents[0]
    assert isinstance(content, TextResourceContents)
    assert "Code word MAREWIND-77" in content.text and content.mimeType == "text/plain"


def test_a_read_only_key_cannot_upload_or_delete(api_url: str, tenants: dict) -> None:
    key = tenants["a_read"]
    content = base64.b64encode(b"a note that must not be stored").decode()
    assert error_code(call(api_url, key, "upload_document", name="note.txt", content_base64=content)) == "forbidden"
    assert error_code(call(api_url, key, "delete_document", document_id=tenants["a_file"])) == "forbidden"
    assert ok(call(api_url, key, "get_document", document_id=tenants["a_file"]))["status"] == "embedded"
    assert ok(call(api_url, key, "list_documents"))["total"] == 1  # nothing was stored


def test_tenant_a_never_sees_tenant_b(api_url: str, tenants: dict) -> None:
    key = tenants["a_key"]
    found = ok(call(api_url, key, "search", query="PIPPINFROST-12 codling moth apple trees", k=10))
    assert tenants["b_file"] not in {r["file_id"] for r in found["results"]}
    assert all(r["file_id"] == tenants["a_file"] for r in found["results"])
    assert error_code(call(api_url, key, "get_document", document_id=tenants["b_file"])) == "file_not_found"
    assert error_code(call(api_url, key, "get_chunks", document_id=tenants["b_file"])) == "file_not_found"
    assert error_code(call(api_url, key, "delete_document", document_id=tenants["b_file"])) == "file_not_found"
    assert [d["file_id"] for d in ok(call(api_url, key, "list_documents"))["items"]] == [tenants["a_file"]]
    answer = ok(call(api_url, key, "ask", question="When are codling moth traps checked?"))
    assert {p["file_id"] for p in answer["passages"]} <= {tenants["a_file"]}

    async def read_other(s: ClientSession) -> str:
        with pytest.raises(McpError) as info:
            await s.read_resource(f"docproc://documents/{tenants['b_file']}")  # type: ignore[arg-type]
        return info.value.error.message

    assert "file_not_found" in session_call(api_url, key, read_other)
    # and B's own key still finds it
    assert ok(call(api_url, tenants["b_key"], "get_document", document_id=tenants["b_file"]))["status"] == "embedded"


def test_a_wrong_key_is_refused_at_the_transport(api_url: str, tenants: dict, stack: Stack) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    wrong = "dp_0123456789ab_" + "x" * 43
    for auth in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "Bearer nonsense"}):
        r = httpx.post(f"{api_url}/mcp", json=body, headers={**headers, **auth}, timeout=10)
        assert r.status_code == 401, r.text
        assert r.json()["detail"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(BaseException) as info:
        session_call(api_url, wrong, lambda s: s.list_tools())
    assert "401" in repr(info.value) or "Unauthorized" in repr(info.value)
    # a revoked key is refused too
    revoked_key = stack.key(f"mcp-revoked-{uuid.uuid4().hex[:6]}", "read")
    with MongoClient(stack.env["MONGO_URL"], tz_aware=True) as mongo:
        SyncKeyStore(mongo, stack.env["MONGO_DB"]).revoke(revoked_key.split("_")[1], actor=CLI)
    r = httpx.post(f"{api_url}/mcp", json=body, headers={**headers, "X-API-Key": revoked_key}, timeout=10)
    assert r.status_code == 401


def test_upload_search_and_delete_through_mcp(api_url: str, stack: Stack) -> None:
    tenant = f"mcp-up-{uuid.uuid4().hex[:6]}"
    key = stack.key(tenant, "read,write")
    text = b"Beekeeping notes. The hives were inspected in June; the queen of hive three was replaced. QUEENSWAP-9."
    content = base64.b64encode(text).decode()
    meta = {"knowledge_base": "bees", "year": 2024}
    up = ok(call(api_url, key, "upload_document", name="bees.txt", content_base64=content, metadata=meta))
    assert up["status"] == "queued" and up["size"] == len(text) and up["content_type"] == "text/plain"
    again = ok(call(api_url, key, "upload_document", name="bees-again.txt", content_base64=content))
    assert again["duplicate_of"] == up["file_id"]
    run_worker()
    with stack.client(api_url, tenant=tenant) as client:
        doc = wait_final(client, [up["file_id"]])[up["file_id"]]
    assert doc["status"] == "embedded" and doc["metadata"] == meta
    found = ok(call(api_url, key, "search", query="QUEENSWAP-9", filters={"metadata": {"year": 2024}}))
    assert [r["file_id"] for r in found["results"]] == [up["file_id"]]
    assert ok(call(api_url, key, "delete_document", document_id=up["file_id"])) == {
        "document_id": up["file_id"],
        "deleted": True,
    }
    assert error_code(call(api_url, key, "get_document", document_id=up["file_id"])) == "file_not_found"
    assert ok(call(api_url, key, "search", query="QUEENSWAP-9"))["results"] == []


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"name": "x.txt", "content_base64": "not base64!"}, "invalid_content"),
        ({"name": "x.bin", "content_base64": base64.b64encode(b"\x00\x01\x02 binary junk" * 50).decode()},
         "unsupported_type"),
        ({"name": "x.txt", "content_base64": base64.b64encode(b"hi").decode(), "metadata": {"$bad": 1}},
         "invalid_metadata"),
        ({"name": "big.txt", "content_base64": base64.b64encode(b"a" * (2 * 1024 * 1024 + 1)).decode()},
         "file_too_large"),
    ],
)  # fmt: skip
def test_upload_errors_have_the_api_codes_and_keep_nothing(
    api_url: str, stack: Stack, arguments: dict, code: str
) -> None:
    tenant = f"mcp-bad-{uuid.uuid4().hex[:6]}"
    key = stack.key(tenant, "read,write")
    assert error_code(call(api_url, key, "upload_document", **arguments)) == code
    assert ok(call(api_url, key, "list_documents"))["total"] == 0


def test_tool_errors_carry_the_api_codes(api_url: str, tenants: dict) -> None:
    key = tenants["a_read"]
    assert error_code(call(api_url, key, "search", query="lamp", k=1000)) == "k_too_large"
    assert error_code(call(api_url, key, "get_document", document_id=str(uuid.uuid4()))) == "file_not_found"
    bad_filter = call(api_url, key, "search", query="lamp", filters={"metadata": {"team": ["a", "b"]}})
    assert bad_filter.isError  # the SDK's argument validation, before the tool runs
    bad_id = call(api_url, key, "get_document", document_id="not-a-uuid")
    assert bad_id.isError


def test_dependency_errors_are_named_by_server() -> None:
    assert dependency_name(pymongo.errors.ServerSelectionTimeoutError("x")) == "MongoDB"
    assert dependency_name(ValueError("x")) is None


def test_ask_with_an_llm_cites_its_passages_and_reports_llm_errors(stack: Stack, tenants: dict) -> None:
    with FakeLLM() as llm:
        env = {"LLM_BASE_URL": llm.base_url, "LLM_MODEL": "fake-model", "LLM_TIMEOUT_S": "2"}
        proc, url = start_api(stack, "api-mcp-llm", env=env)
        try:
            out = ok(call(url, tenants["a_read"], "ask", question="What broke the lantern glass?", k=2))
            assert out["generator"] == "llm" and out["model"] == "fake-model"
            assert "[1]" in out["answer"] and out["citations"][0]["n"] == 1
            assert out["citations"][0]["file_id"] == tenants["a_file"]
            prompt = llm.requests[-1]["body"]["messages"][-1]["content"]
            assert "Skerryvore" in prompt  # the passages went to the LLM
            failed = call(url, tenants["a_read"], "ask", question="[[error]] what broke?")
            assert error_code(failed) == "llm_error"
        finally:
            proc.stop()


def test_an_upload_larger_than_max_json_bytes_goes_through_mcp(api_url: str, stack: Stack) -> None:
    tenant = f"mcp-big-{uuid.uuid4().hex[:6]}"
    key = stack.key(tenant, "read,write")
    text = ("Tide table notes for the outer harbour. " * 30000).encode()[:1_300_000]  # > MAX_JSON_BYTES (1 MiB)
    up = ok(call(api_url, key, "upload_document", name="tides.txt", content_base64=base64.b64encode(text).decode()))
    assert up["size"] == len(text) and up["status"] == "queued"
    ok(call(api_url, key, "delete_document", document_id=up["file_id"]))  # no worker needs to embed it
