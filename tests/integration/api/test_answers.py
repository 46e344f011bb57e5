"""Answers through the real stack: POST /generate and POST /generate-text-with-context against a
small chat-completions server (tests/fixtures/llm_server.py: plain, streamed, failing and slow
answers), and without any LLM (503 / extractive)."""

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pymongo import MongoClient

from tests.fixtures.api import delete_files, wait_final, wait_interaction
from tests.fixtures.documents import make_pdf
from tests.fixtures.llm_server import SLOW_S, FakeLLM
from tests.fixtures.stack import Stack, start_api
from tests.fixtures.worker import run_worker

LIGHTHOUSE = [
    "Keeper's log, Skarvik lighthouse. The lamp was converted from paraffin to electricity in 1931. "
    "The keeper climbs 146 steps to the lantern room every evening at dusk.",
    "Maintenance. The fog horn is tested every Tuesday at noon. The lens is cleaned with alcohol "
    "and chamois leather once a week, and the brass fittings are polished on Saturdays.",
]


HARBOUR = "Harbour notice. The fog horn on the breakwater at Nordhamn sounds twice every minute in fog."


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def llm_api(stack: Stack, llm: FakeLLM) -> Iterator[httpx.Client]:
    env = {"LLM_BASE_URL": llm.base_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "sk-test-key", "LLM_TIMEOUT_S": "1"}
    proc, url = start_api(stack, "api-llm", env=env)
    with stack.client(url) as c:
        yield c
    proc.stop()


@pytest.fixture(scope="module")
def docs(api_url: str, stack: Stack) -> Iterator[dict]:
    with stack.client(api_url, timeout=60) as client:
        docs = _upload_docs(client)
        yield docs
        delete_files(client, docs["ids"].values())


def _upload_docs(client: httpx.Client) -> dict:
    tag = f"gen-{uuid.uuid4().hex[:8]}"
    r = client.post(
        "/upload",
        files=[
            ("files", ("skarvik-log.pdf", make_pdf(LIGHTHOUSE), "application/pdf")),
            ("files", ("nordhamn-notice.txt", HARBOUR.encode(), "text/plain")),
        ],
        data={"metadata": json.dumps({"suite": tag})},
    )
    assert r.status_code == 202, r.text
    ids = {f["filename"]: f["file_id"] for f in r.json()["files"]}
    run_worker()
    assert {d["status"] for d in wait_final(client, list(ids.values())).values()} == {"embedded"}
    return {"tag": tag, "ids": ids, "filters": {"metadata": {"suite": tag}}}


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_generate_plain(llm_api: httpx.Client, llm: FakeLLM, stack: Stack) -> None:
    r = llm_api.post("/generate", json={"query": "What is a lighthouse?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "Plain answer to: What is a lighthouse?"
    assert body["generator"] == "llm" and body["model"] == "fake-model" and body["latency_ms"]["generate_ms"] > 0
    sent = llm.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test-key"
    assert sent["body"]["model"] == "fake-model" and sent["body"]["stream"] is False
    assert sent["body"]["max_tokens"] == 512 and sent["body"]["messages"][-1]["content"] == "What is a lighthouse?"
    doc = wait_interaction(stack, body["interaction_id"])
    assert doc["endpoint"] == "generate" and doc["answer"] == body["answer"] and doc["model"] == "fake-model"
    assert doc["retrieved"] == [] and doc["generator"] == "llm" and doc["error"] is None


def test_generate_streams_tokens(llm_api: httpx.Client) -> None:
    r = llm_api.post("/generate", json={"query": "Say something", "stream": True})
    assert r.status_code == 200, r.text
    events = sse_events(r)
    tokens = [d["text"] for e, d in events if e == "token"]
    assert len(tokens) > 1
    kind, done = events[-1]
    assert kind == "done" and done["answer"] == "".join(tokens) == "Plain answer to: Say something"
    assert done["model"] == "fake-model" and "first_token_ms" in done["latency_ms"]


@pytest.mark.parametrize(
    ("marker", "status", "code", "says"),
    [
        ("[[error]]", 502, "llm_error", "HTTP 500: the model is overloaded"),
        ("[[garbage]]", 502, "llm_error", "not a chat completion"),
        ("[[drop]]", 502, "llm_error", "could not be reached"),
        ("[[slow]]", 504, "llm_timeout", "within 1 s"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_generate_llm_failures(llm_api: httpx.Client, marker: str, status: int, code: str, says: str, stream) -> None:
    if marker == "[[garbage]]" and stream:
        says = "not an event stream"
    t0 = time.monotonic()
    r = llm_api.post("/generate", json={"query": f"hello {marker}", "stream": stream})
    elapsed = time.monotonic() - t0
    assert r.status_code == status, r.text
    assert r.json()["detail"]["code"] == code and says in r.json()["detail"]["message"]
    assert elapsed < SLOW_S  # the timeout, not the server, ended the slow one


def test_context_answer_cites_the_passages_it_used(llm_api: httpx.Client, llm: FakeLLM, docs: dict, stack) -> None:
    body = {"query": "How often is the fog horn tested?", "k": 2, "filters": docs["filters"]}
    r = llm_api.post("/generate-text-with-context", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["generator"] == "llm" and out["model"] == "fake-model"
    assert [p["n"] for p in out["passages"]] == [1, 2]
    assert out["answer"].endswith("[2].") and "[1]" in out["answer"]
    cited = {c["n"]: c for c in out["citations"]}
    assert set(cited) == {1, 2}
    for p in out["passages"]:
        assert cited[p["n"]]["file_id"] == p["file_id"] and cited[p["n"]]["page_start"] == p["page_start"]
    log = next(p for p in out["passages"] if p["filename"] == "skarvik-log.pdf")
    assert "Tuesday" in log["text"] and log["page_start"] <= 2 <= log["page_end"]
    notice = next(p for p in out["passages"] if p["filename"] == "nordhamn-notice.txt")
    # the prompt: numbered passages with where they come from, then the question
    prompt = llm.requests[-1]["body"]["messages"][-1]["content"]
    pages = f"page {log['page_start']}" if log["page_start"] == log["page_end"] else "pages 1-2"
    assert f"[{log['n']}] (skarvik-log.pdf, {pages})" in prompt and f"[{notice['n']}] (nordhamn-notice.txt)" in prompt
    assert prompt.rstrip().endswith("Answer, citing the passages by number:") and body["query"] in prompt
    doc = wait_interaction(stack, out["interaction_id"])
    assert doc["endpoint"] == "generate-text-with-context" and doc["citations"] == [1, 2]
    assert doc["answer"] == out["answer"] and doc["generator"] == "llm" and doc["model"] == "fake-model"
    assert [x["chunk_id"] for x in doc["retrieved"]] == [p["chunk_id"] for p in out["passages"]]
    assert {"embed_ms", "search_ms", "generate_ms", "total_ms"} <= set(doc["latency_ms"])


def test_context_filters_limit_the_passages(llm_api: httpx.Client, docs: dict) -> None:
    flt = {"metadata": {"suite": docs["tag"]}, "file_ids": [docs["ids"]["nordhamn-notice.txt"]]}
    out = llm_api.post("/generate-text-with-context", json={"query": "fog horn", "k": 5, "filters": flt}).json()
    assert {p["filename"] for p in out["passages"]} == {"nordhamn-notice.txt"}
    assert [c["n"] for c in out["citations"]] == [1]  # the fake cites [2] only when there is a second passage


def test_context_answer_streams(llm_api: httpx.Client, docs: dict) -> None:
    body = {"query": "When is the fog horn tested?", "k": 2, "filters": docs["filters"], "stream": True}
    r = llm_api.post("/generate-text-with-context", json=body)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    assert events[0][0] == "passages" and len(events[0][1]["passages"]) == 2
    tokens = "".join(d["text"] for e, d in events if e == "token")
    kind, done = events[-1]
    assert kind == "done" and done["answer"] == tokens and done["generator"] == "llm"
    assert [c["n"] for c in done["citations"]] == [1, 2] and done["passages"] == events[0][1]["passages"]


@pytest.mark.parametrize(
    ("marker", "status", "code"), [("[[error]]", 502, "llm_error"), ("[[slow]]", 504, "llm_timeout")]
)
@pytest.mark.parametrize("stream", [False, True])
def test_context_llm_failure_still_returns_the_passages(
    llm_api: httpx.Client, docs: dict, stack: Stack, marker: str, status: int, code: str, stream: bool
) -> None:
    body = {"query": f"fog horn {marker}", "k": 2, "filters": docs["filters"], "stream": stream}
    r = llm_api.post("/generate-text-with-context", json=body)
    assert r.status_code == status, r.text
    out = r.json()
    assert out["detail"]["code"] == code and out["detail"]["message"]
    assert len(out["passages"]) == 2 and {p["filename"] for p in out["passages"]} <= {
        "skarvik-log.pdf",
        "nordhamn-notice.txt",
    }
    doc = wait_interaction(stack, out["interaction_id"])
    assert doc["error"]["code"] == code and doc["answer"] is None and len(doc["retrieved"]) == 2


def test_stream_that_stalls_ends_with_an_error_event(llm_api: httpx.Client, docs: dict) -> None:
    body = {"query": "fog horn [[slow-stream]]", "k": 1, "filters": docs["filters"], "stream": True}
    r = llm_api.post("/generate-text-with-context", json=body)
    assert r.status_code == 200
    events = sse_events(r)
    assert [e for e, _ in events][:2] == ["passages", "token"]
    assert events[-1][0] == "error" and events[-1][1]["code"] == "llm_timeout"


def test_bad_requests_are_422(llm_api: httpx.Client) -> None:
    for path, body, code in [
        ("/generate", {"query": ""}, "invalid_query"),
        ("/generate", {"query": "x", "stream": "sometimes"}, "invalid_request"),
        ("/generate-text-with-context", {"query": "x", "k": 0}, "invalid_k"),
        ("/generate-text-with-context", {"query": "x", "k": 500}, "k_too_large"),
        ("/generate-text-with-context", {"query": "x", "mode": "magic"}, "invalid_mode"),
        ("/generate-text-with-context", {"query": "x", "filters": {"file_ids": ["x"]}}, "invalid_filters"),
    ]:
        r = llm_api.post(path, json=body)
        assert r.status_code == 422 and r.json()["detail"]["code"] == code, (path, body, r.text)


def test_generate_without_llm_is_503(client: httpx.Client) -> None:
    r = client.post("/generate", json={"query": "hello"})
    assert r.status_code == 503
    assert r.json()["detail"]["code"] == "llm_not_configured" and "LLM_BASE_URL" in r.json()["detail"]["message"]


def test_context_without_llm_answers_extractively(client: httpx.Client, docs: dict, stack: Stack) -> None:
    body = {"query": "How many steps does the keeper climb?", "k": 2, "filters": docs["filters"]}
    r = client.post("/generate-text-with-context", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["generator"] == "extractive" and out["model"] is None
    assert "146 steps" in out["answer"] and "[1]" in out["answer"]
    assert out["citations"][0]["filename"] == "skarvik-log.pdf" and out["citations"][0]["page_start"] == 1
    assert out["passages"][0]["n"] == 1 and out["passages"][0]["file_id"] == out["citations"][0]["file_id"]
    doc = wait_interaction(stack, out["interaction_id"])
    assert doc["generator"] == "extractive" and doc["answer"] == out["answer"] and doc["citations"] == [1]

    r = client.post("/generate-text-with-context", json={**body, "stream": True})
    events = sse_events(r)
    assert [e for e, _ in events] == ["passages", "token", "done"]
    assert events[-1][1]["answer"] == events[1][1]["text"] == out["answer"]

    nothing = {"query": "fog", "k": 2, "filters": {"metadata": {"suite": "no-such-suite"}}}
    out = client.post("/generate-text-with-context", json=nothing).json()
    assert out["passages"] == [] and out["citations"] == [] and out["answer"].startswith("No passage")


def test_interaction_log_can_be_turned_off(stack: Stack, client: httpx.Client) -> None:
    proc, url = start_api(stack, "api-nolog", env={"INTERACTIONS_LOG": "false"})
    try:
        with MongoClient(stack.env["MONGO_URL"]) as mongo:
            col = mongo[stack.env["MONGO_DB"]]["interactions"]
            before = col.count_documents({})
            r = httpx.post(f"{url}/query", json={"query": "fog horn", "k": 1}, timeout=30, headers=stack.auth())
            assert r.status_code == 200 and r.json()["interaction_id"] is None
            body = {"query": "fog horn", "k": 1}
            r = httpx.post(f"{url}/generate-text-with-context", json=body, timeout=30, headers=stack.auth())
            assert r.status_code == 200 and r.json()["interaction_id"] is None
            time.sleep(0.5)
            assert col.count_documents({}) == before
    finally:
        proc.stop()
