"""Schema-based fuzzing: schemathesis against the OpenAPI schema of the running API (issue 9).

A real API process (AUTH enabled, an admin key of a tenant of its own, a queue no worker
drains) gets a bounded number of generated requests per operation, valid and invalid:
every answer must be below 500 and match the schema (documented status code, content
type, headers and body). What fuzzing found is kept as regression tests below.
"""

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm_server import FakeLLM
from tests.stack import Stack, start_api

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = 25  # per operation and phase; the whole run stays well under two minutes


REVOKE = "revoke_key_admin_keys__key_id__delete"  # run on its own: it could revoke the fuzzing key itself


@pytest.fixture(scope="module")
def fuzz_api(stack: Stack) -> Iterator[tuple[str, str]]:
    """An API with an LLM (so /generate answers rather than 503), on a queue no worker drains."""
    with FakeLLM() as llm:
        env = {
            "QUEUE_NAME": "ingest-fuzz",
            "MAX_PENDING_FILES_PER_TENANT": "500",
            "LLM_BASE_URL": llm.base_url,
            "LLM_MODEL": "fake-model",
        }
        proc, url = start_api(stack, "api-fuzz", env=env)
        try:
            yield url, stack.key(f"fuzz-{uuid.uuid4().hex[:6]}", "read,write,admin")
        finally:
            proc.stop()


def schemathesis(url: str, key: str, report_dir: Path, *filters: str) -> subprocess.CompletedProcess:
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20269",
        # one worker: hypothesis' lambda descriptions call ast.parse, which is not thread-safe on CPython 3.11.7
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
        *filters,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=report_dir, timeout=240)


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_api: tuple[str, str], tmp_path: Path) -> None:
    url, key = fuzz_api
    for name, filters in (("all", ["--exclude-operation-id", REVOKE]), ("revoke", ["--include-operation-id", REVOKE])):
        (tmp_path / name).mkdir()
        result = schemathesis(url, key, tmp_path / name, *filters)
        print(result.stdout[-8000:])
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-3000:]


# --- regressions: what the fuzzing found ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/query", "/generate", "/generate-text-with-context", "/admin/keys"])
def test_a_body_that_is_not_utf8_json_is_a_coded_422(client: httpx.Client, path: str) -> None:
    """FastAPI answered 400 `{"detail": "There was an error parsing the body"}`: undocumented, uncoded."""
    r = client.post(path, content=b"r\xffVU\xfe", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "invalid_request", r.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "x", "stream": 0}, "invalid_request"),
        ({"query": "x", "k": "5"}, "invalid_k"),
        ({"query": "x", "k": 5.0}, "invalid_k"),
        ({"query": "x", "highlight": 1}, "invalid_request"),
        ({"query": "x", "keyword_weight": True}, "invalid_request"),
    ],
)
def test_json_types_are_taken_as_the_schema_says(client: httpx.Client, body: dict, code: str) -> None:
    """Pydantic's lax mode took `"stream": 0` and `"k": "5"`, which the schema calls invalid."""
    path = "/generate-text-with-context" if "stream" in body else "/query"
    r = client.post(path, json=body)
    assert r.status_code == 422 and r.json()["detail"]["code"] == code, r.text


def test_an_empty_content_type_filter_is_refused_by_the_schema(client: httpx.Client, api_url: str) -> None:
    """`content_type=` was schema-valid but refused: the schema now says minLength 1."""
    r = client.get("/search", params={"q": "x", "content_type": ""})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "invalid_filters"
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    (param,) = [p for p in spec["paths"]["/search"]["get"]["parameters"] if p["name"] == "content_type"]
    assert '"minLength": 1' in json.dumps(param["schema"])


def test_streamed_answers_are_in_the_schema(client: httpx.Client, api_url: str) -> None:
    """`stream: true` answers text/event-stream, which the schema did not declare (nor each event's shape)."""
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    for path in ("/generate", "/generate-text-with-context"):
        assert "text/event-stream" in spec["paths"][path]["post"]["responses"]["200"]["content"]
    with client.stream("POST", "/generate-text-with-context", json={"query": "anything", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.split(": ", 1)[0] for line in r.iter_lines() if line and not line.startswith("data")]
    assert events[0] == "event" and len(events) >= 3


def test_unknown_routes_and_methods_answer_coded_errors(client: httpx.Client) -> None:
    r = client.get("/no-such-route")
    assert r.status_code == 404 and r.json()["detail"]["code"] == "not_found"
    r = client.put("/files")
    assert r.status_code == 405 and r.json()["detail"]["code"] == "method_not_allowed"


def test_an_admin_key_may_revoke_itself(api_url: str, stack: Stack) -> None:
    """The fuzzer learnt key ids from GET /admin/keys and revoked its own key: allowed (a leaked key can be
    revoked with itself), and from then on that key is 401; the fuzz run now tests revocation on its own."""
    with stack.client(api_url) as admin:
        body = admin.post("/admin/keys", json={"name": "self", "scopes": ["admin"]}).json()
    headers = {"Authorization": f"Bearer {body['key']}"}
    assert httpx.delete(f"{api_url}/admin/keys/{body['key_id']}", headers=headers, timeout=10).status_code == 204
    r = httpx.get(f"{api_url}/admin/keys", headers=headers, timeout=10)
    assert r.status_code == 401 and r.json()["detail"]["code"] == "unauthorized"
