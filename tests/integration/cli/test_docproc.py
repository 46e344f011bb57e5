"""The `docproc` command line, run as a real process against the real stack: bulk upload with
concurrency, re-runs that upload nothing new (also after the CLI is killed mid-run), failures with
their codes and a non-zero exit, Retry-After, waiting for processing, ls/show/rm/search/ask/watch,
keys in MongoDB and over the admin API, and MCP on stdio."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.fixtures import ROOT
from tests.fixtures.api import wait_final
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack, start_api
from tests.fixtures.worker import run_worker

CLI = [sys.executable, "-m", "app.cli.docproc"]
WORDS = [
    "harbour",
    "crane",
    "boom",
    "hoist",
    "brake",
    "lining",
    "corrosion",
    "inspection",
    "quay",
    "tonnes",
    "load",
    "limit",
    "service",
    "repair",
]


def env_for(url: str, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCPROC_URL", "DOCPROC_API_KEY")}
    env.update(DOCPROC_URL=url, COLUMNS="250", NO_COLOR="1")
    if key:
        env["DOCPROC_API_KEY"] = key
    return env


def docproc(url: str, key: str | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], env=env_for(url, key), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def tenant_files(stack: Stack, url: str, tenant: str) -> list[dict[str, Any]]:
    with stack.client(url, tenant=tenant) as client:
        return client.get("/files", params={"limit": 500}).json()["items"]


def remove_all(stack: Stack, url: str, tenant: str) -> None:
    """Leave the shared queue and database as found (no other test should embed these)."""
    with stack.client(url, tenant=tenant) as client:
        for d in client.get("/files", params={"limit": 500}).json()["items"]:
            client.delete(f"/files/{d['file_id']}")


def write_tree(root: Path, n: int, prefix: str) -> list[Path]:
    """`n` distinct text files spread over three nested folders."""
    paths = []
    for i in range(n):
        folder = root / ("a" if i % 3 == 0 else "b/c" if i % 3 == 1 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"{prefix}-{i:02d}.txt"
        p.write_text(f"Note {prefix} number {i}. " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40)))
        paths.append(p)
    return paths


@pytest.fixture
def tenant(stack: Stack, api_url: str) -> Iterator[tuple[str, str]]:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    yield name, stack.key(name, "read,write")
    remove_all(stack, api_url, name)


def test_a_folder_of_30_files_with_concurrency_4_and_a_rerun_uploads_nothing_new(
    api_url: str, stack: Stack, tenant: tuple[str, str], tmp_path: Path
) -> None:
    name, key = tenant
    write_tree(tmp_path, 30, "doc")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "skip.txt").write_text("a hidden file is not uploaded")
    first = docproc(api_url, key, "upload", str(tmp_path), "-r", "--concurrency", "4", "-m", "batch=one", "--json")
    assert first.returncode == 0, first.stderr
    outcomes = json.loads(first.stdout)
    assert len(outcomes) == 30 and {o["result"] for o in outcomes} == {"queued"}
    assert {o["path"] for o in outcomes} >= {"a/doc-00.txt", "b/c/doc-01.txt", "b/doc-02.txt"}
    files = tenant_files(stack, api_url, name)
    assert len(files) == 30 and {f["metadata"]["batch"] for f in files} == {"one"}
    assert sorted(f["file_id"] for f in files) == sorted(o["file_id"] for o in outcomes)

    again = docproc(api_url, key, "upload", str(tmp_path), "-r", "--concurrency", "4", "-m", "batch=one")
    assert again.returncode == 0, again.stderr
    assert "0 failed" in again.stdout and "30 skipped as already uploaded or duplicates" in again.stdout
    assert "queued" not in again.stdout.split("upload summary", 1)[1].replace("skipped", "")
    assert len(tenant_files(stack, api_url, name)) == 30  # nothing uploaded twice


def test_one_bad_file_exits_non_zero_with_its_code_in_the_summary(
    api_url: str, stack: Stack, tenant: tuple[str, str], tmp_path: Path
) -> None:
    name, key = tenant
    write_tree(tmp_path, 3, "ok")
    (tmp_path / "bad.bin").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "empty.txt").write_bytes(b"")
    r = docproc(api_url, key, "upload", str(tmp_path), "--recursive", "-c", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 4}
    assert "unsupported_type" in rows["bad.bin"] and "refused" in rows["bad.bin"]
    assert "empty_file" in rows["empty.txt"]
    assert "3 queued" in r.stdout and "2 failed (unsupported_type: 1, empty_file: 1)" in r.stdout
    assert len(tenant_files(stack, api_url, name)) == 3  # the good files went in all the same


def test_killed_mid_run_the_rerun_resumes_without_duplicates(
    api_url: str, stack: Stack, tenant: tuple[str, str], tmp_path: Path
) -> None:
    name, key = tenant
    for i in range(12):  # big enough that the run is still going when it is killed
        (tmp_path / f"big-{i:02d}.txt").write_text(f"file {i} " + " ".join(WORDS) * 9000)
    proc = subprocess.Popen(
        [*CLI, "upload", str(tmp_path), "-c", "1"], env=env_for(api_url, key), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len([f for f in tenant_files(stack, api_url, name) if f["status"] == "queued"]) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {f["filename"] for f in tenant_files(stack, api_url, name) if f["status"] == "queued"}
    assert 2 <= len(done_before) < 12
    time.sleep(0.5)
    r = docproc(api_url, key, "upload", str(tmp_path), "-c", "3", "--json")
    assert r.returncode == 0, r.stderr
    results = {Path(o["path"]).name: o["result"] for o in json.loads(r.stdout)}
    assert {results[n] for n in done_before} == {"skipped"}
    assert "queued" in results.values()
    files = tenant_files(stack, api_url, name)
    assert sorted(f["filename"] for f in files) == sorted(f"big-{i:02d}.txt" for i in range(12))  # once each


def test_rate_limits_are_waited_out_as_retry_after_says(stack: Stack, tmp_path: Path) -> None:
    proc, url = start_api(stack, "api-cli-rate", env={"UPLOAD_RATE": "2/2second", "QUEUE_NAME": "ingest-cli-rate"})
    name = f"cli-rate-{uuid.uuid4().hex[:6]}"
    try:
        write_tree(tmp_path, 6, "rate")
        t0 = time.monotonic()
        r = docproc(url, stack.key(name, "read,write"), "upload", str(tmp_path), "-r", "-c", "4", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert {o["result"] for o in json.loads(r.stdout)} == {"queued"}
        assert time.monotonic() - t0 >= 4  # six uploads at two per two seconds
        assert len(tenant_files(stack, url, name)) == 6
        remove_all(stack, url, name)
    finally:
        proc.stop()


def test_wait_follows_processing_until_embedded_or_failed(
    api_url: str, stack: Stack, tenant: tuple[str, str], tmp_path: Path
) -> None:
    name, key = tenant
    write_tree(tmp_path, 2, "wait")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n" + b"\x00garbage" * 200)
    proc = subprocess.Popen(
        [*CLI, "upload", str(tmp_path), "-r", "--wait"], env=env_for(api_url, key), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while proc.poll() is None:
        assert time.monotonic() < deadline
        run_worker()
        time.sleep(0.3)
    stdout = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 1, stdout
    assert "2 embedded" in stdout and "pdf_corrupt" in stdout
    assert {f["status"] for f in tenant_files(stack, api_url, name)} == {"embedded", "failed"}


@pytest.fixture(scope="module")
def indexed(stack: Stack, api_url: str) -> Iterator[dict[str, Any]]:
    """A tenant with one embedded PDF, through the CLI."""
    name = f"cli-idx-{uuid.uuid4().hex[:6]}"
    key = stack.key(name, "read,write")
    folder = Path(stack.root) / f"cli-{name}"
    folder.mkdir()
    pdf = make_pdf(["Ferry timetable. The morning ferry to the island leaves at 07:15 from pier four.",
                    "Winter service: the ferry does not run on Sundays between December and February."])  # fmt: skip
    (folder / "ferry.pdf").write_bytes(pdf)
    r = docproc(api_url, key, "upload", str(folder), "-m", "topic=transport", "--json")
    assert r.returncode == 0, r.stderr
    fid = json.loads(r.stdout)[0]["file_id"]
    run_worker()
    with stack.client(api_url, tenant=name) as client:
        assert wait_final(client, [fid])[fid]["status"] == "embedded"
    yield {"tenant": name, "key": key, "file_id": fid}
    remove_all(stack, api_url, name)


def test_ls_show_search_ask_and_watch(api_url: str, indexed: dict) -> None:
    key, fid = indexed["key"], indexed["file_id"]
    ls = docproc(api_url, key, "ls", "--name", "FERRY*")
    assert ls.returncode == 0 and fid in ls.stdout and "embedded" in ls.stdout and "1 of 1" in ls.stdout
    assert "0 of 0" in docproc(api_url, key, "ls", "--status", "failed").stdout
    shown = json.loads(docproc(api_url, key, "show", fid, "--json").stdout)
    assert shown["status"] == "embedded" and shown["page_count"] == 2 and shown["metadata"] == {"topic": "transport"}
    found = json.loads(docproc(api_url, key, "search", "when does the morning ferry leave?", "--json").stdout)
    assert found["results"][0]["file_id"] == fid and found["results"][0]["page_start"] == 1
    table = docproc(api_url, key, "search", "Sunday service", "-f", "topic=transport", "-k", "1")
    top = found["results"][0]
    assert table.returncode == 0 and "ferry.pdf" in table.stdout, table.stdout
    assert f"{top['page_start']}-{top['page_end']}" in table.stdout
    none = docproc(api_url, key, "search", "Sunday service", "--filter", "topic=food", "--json")
    assert json.loads(none.stdout)["results"] == []
    ask = docproc(api_url, key, "ask", "Does the ferry run on Sundays in winter?")
    assert ask.returncode == 0, ask.stderr
    answer, _, citations = ask.stdout.partition("citations")
    assert "Sunday" in answer and "ferry.pdf" in citations
    done = json.loads(docproc(api_url, key, "ask", "When does the morning ferry leave?", "--json").stdout)
    assert done["generator"] == "extractive" and done["citations"][0]["file_id"] == fid
    watched = docproc(api_url, key, "watch", fid, "--interval", "0.2", timeout=30)
    assert watched.returncode == 0 and "embedded" in watched.stdout


def test_errors_exit_1_with_the_api_code(api_url: str, indexed: dict, stack: Stack) -> None:
    missing = str(uuid.uuid4())
    r = docproc(api_url, indexed["key"], "show", missing)
    assert r.returncode == 1 and "file_not_found" in r.stderr
    r = docproc(api_url, "dp_0123456789ab_" + "x" * 43, "ls")
    assert r.returncode == 1 and "unauthorized" in r.stderr
    r = docproc("http://127.0.0.1:9", indexed["key"], "ls")
    assert r.returncode == 1 and "cannot reach" in r.stderr
    r = docproc(api_url, indexed["key"], "search", "x", "-k", "1000")
    assert r.returncode == 1 and "k_too_large" in r.stderr
    r = docproc(api_url, indexed["key"], "upload", "/no/such/folder")
    assert r.returncode == 2
    reader = stack.key(indexed["tenant"], "read")
    r = docproc(api_url, reader, "rm", indexed["file_id"])
    assert r.returncode == 1 and "forbidden" in r.stderr


def test_rm_deletes(api_url: str, stack: Stack, tenant: tuple[str, str], tmp_path: Path) -> None:
    name, key = tenant
    write_tree(tmp_path, 2, "rm")
    ids = [o["file_id"] for o in json.loads(docproc(api_url, key, "upload", str(tmp_path), "-r", "--json").stdout)]
    r = docproc(api_url, key, "rm", *ids, str(uuid.uuid4()))
    assert r.returncode == 1 and r.stdout.count("deleted") == 2 and "file_not_found" in r.stderr
    assert tenant_files(stack, api_url, name) == []


def test_keys_in_mongodb_first_then_over_the_admin_api(api_url: str, stack: Stack) -> None:
    name = f"cli-keys-{uuid.uuid4().hex[:6]}"
    first = docproc(api_url, None, "keys", "create", "--tenant", name, "--name", "first admin", "--scopes",
                    "read,write,admin")  # fmt: skip
    assert first.returncode == 0, first.stderr
    admin = first.stdout.strip()
    assert admin.startswith("dp_") and "shown only now" in first.stderr
    assert httpx.get(f"{api_url}/files", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    bot = docproc(api_url, admin, "keys", "create", "--name", "ingest bot", "--scopes", "read")
    assert bot.returncode == 0, bot.stderr
    bot_key = bot.stdout.strip()
    listed = json.loads(docproc(api_url, admin, "keys", "list", "--json").stdout)
    assert {k["name"] for k in listed} == {"first admin", "ingest bot"} and {k["tenant"] for k in listed} == {name}
    assert "hash" not in json.dumps(listed)
    refused = docproc(api_url, admin, "keys", "create", "--tenant", "other", "--name", "x")
    assert refused.returncode == 2  # over the API a key makes keys of its own tenant only
    bot_id = bot_key.split("_")[1]
    assert docproc(api_url, admin, "keys", "revoke", bot_id).returncode == 0
    assert httpx.get(f"{api_url}/files", headers={"Authorization": f"Bearer {bot_key}"}).status_code == 401
    direct = json.loads(docproc(api_url, admin, "keys", "list", "--mongo", "--tenant", name, "--json").stdout)
    assert {k["_id"]: bool(k.get("revoked_at")) for k in direct}[bot_id] is True
    old = subprocess.run([sys.executable, "-m", "app.cli.keys", "list", "--tenant", name], env=env_for(api_url, None),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert old.returncode == 0 and bot_id in old.stdout
    admin_id = admin.split("_")[1]
    assert docproc(api_url, None, "keys", "revoke", admin_id).returncode == 0  # MongoDB mode: any tenant's key
    assert httpx.get(f"{api_url}/files", headers={"Authorization": f"Bearer {admin}"}).status_code == 401


def test_mcp_on_stdio_relays_to_the_api(api_url: str, indexed: dict) -> None:
    async def main() -> tuple[set[str], dict[str, Any], bool]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "app.cli.docproc", "--url", api_url, "--key", indexed["key"], "mcp"],
            env=env_for(api_url, None), cwd=str(ROOT),
        )  # fmt: skip
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            found = await session.call_tool("search", {"query": "morning ferry pier four", "k": 1})
            denied = await session.call_tool("delete_document", {"document_id": str(uuid.uuid4())})
            return tools, found.structuredContent or {}, denied.isError

    tools, found, denied = asyncio.run(main())
    assert "upload_document" in tools and "ask" in tools
    assert found["results"][0]["file_id"] == indexed["file_id"]
    assert denied  # file_not_found: the server's answer, relayed


def test_mcp_on_stdio_with_a_wrong_key_exits_1_with_the_reason(api_url: str) -> None:
    client = {"name": "t", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    r = subprocess.run(
        [*CLI, "--key", "dp_0123456789ab_" + "x" * 43, "mcp"], input=json.dumps(hello) + "\n",
        env=env_for(api_url, None), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "401 unauthorized" in r.stderr and r.stdout == ""


def test_mcp_on_stdio_answers_what_was_piped_in_before_stdin_closed(api_url: str, indexed: dict) -> None:
    client = {"name": "t", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "search", "arguments": {"query": "morning ferry", "k": 1}}},
    ]  # fmt: skip
    r = subprocess.run(
        [*CLI, "--key", indexed["key"], "mcp"], input="".join(json.dumps(m) + "\n" for m in lines),
        env=env_for(api_url, None), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    answers = {m["id"]: m for m in map(json.loads, r.stdout.splitlines())}
    assert answers[1]["result"]["serverInfo"]["name"] == "docproc"
    assert answers[2]["result"]["structuredContent"]["results"][0]["file_id"] == indexed["file_id"]
