"""Schema-based fuzzing: schemathesis against the OpenAPI schema of the running API (issue 9).

A real API process (AUTH enabled, an admin key of a tenant of its own, a queue no worker
drains) gets a bounded number of generated requests per operation, valid and invalid:
every answer must be below 500 and match the schema (documented status code, content
type, headers and body). What the schema does not describe (`meta.*` query parameters,
the `metadata` / `file_metadata` parts of an upload, raw JSON in `filters.metadata`) is
fuzzed with hypothesis directly. What fuzzing found is kept as regression tests below.
"""

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from tests.fixtures.llm_server import FakeLLM
from tests.fixtures.stack import Stack, start_api

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


HOSTILE = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


ANY_CHAR = st.characters(exclude_categories=())  # NUL and lone surrogates too


TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-0", "1.5e-400", "null", "true", str(2**64),
          str(-(2**63) - 1), "9" * 5000, "1" * 400 + ".5", "0x10", "01"]  # fmt: skip


KEYS = st.one_of(
    st.text(ANY_CHAR, max_size=20),
    st.sampled_from(["$where", "$in", "$", "a.b", ".", "", "\x00", "\ud800", "k" * 101, "__proto__"]),
)


DIGITS = st.builds(lambda sign, n, frac: sign + "9" * n + frac, st.sampled_from(["", "-"]), st.integers(1, 5000),
                   st.sampled_from(["", ".5", "e400"]))  # fmt: skip


TEXT = st.one_of(st.text(ANY_CHAR, max_size=60), st.sampled_from(TOKENS), DIGITS)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=15,
)


def _deep(n: int, opener: str) -> str:
    closer = {"[": "]", '{"a": ': "}"}[opener]
    return opener * n + "1" + closer * n


HOSTILE_JSON = st.one_of(  # JSON text, or nearly
    st.builds(lambda v, ascii_: json.dumps(v, ensure_ascii=ascii_), JSON_VALUES, st.booleans()),
    st.builds(lambda t: '{"a": ' + t + "}", st.sampled_from(TOKENS) | DIGITS),
    st.builds(lambda t: '{"a": {"$in": [' + t + "]}}", st.sampled_from(TOKENS) | DIGITS),
    st.builds(_deep, st.integers(1, 8000), st.sampled_from(["[", '{"a": '])),
    st.builds(lambda n: json.dumps({"a": list(range(n))}), st.integers(90, 3000)),
    st.builds(lambda n: json.dumps({f"k{i}": i for i in range(n)}), st.integers(30, 200)),
    st.text(ANY_CHAR, max_size=200),
)


HOSTILE_BYTES = st.one_of(
    HOSTILE_JSON.map(lambda t: t.encode("utf-8", "surrogatepass")),  # a lone surrogate: not UTF-8
    st.binary(max_size=300),
    st.builds(lambda n: b"[" * n, st.integers(1, 16_000)),
    st.just(b'{"a": "' + b"x" * 17_000 + b'"}'),
)


ERROR_KEYS = {"code", "message"}


def _check(r: httpx.Response, codes: set[str]) -> None:
    assert r.status_code < 500, r.text[:2000]
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"detail"} and set(body["detail"]) == ERROR_KEYS, body
        assert body["detail"]["code"] in codes and body["detail"]["message"], body
    event(
        f"{r.status_code} {r.json()['detail']['code'] if r.status_code >= 400 else ''}"
    )  # --hypothesis-show-statistics


@pytest.fixture(scope="module")
def fuzz_client(fuzz_api: tuple[str, str], stack: Stack) -> Iterator[httpx.Client]:
    """The fuzz API as a tenant of its own (its uploads count against no one else's pending files)."""
    with stack.client(fuzz_api[0], tenant=f"hyp-{uuid.uuid4().hex[:6]}") as client:
        yield client


def _percent(value: str | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


@seed(20269)
@HOSTILE
@given(params=st.lists(st.tuples(KEYS, TEXT | st.binary(max_size=40)), min_size=1, max_size=40))
def test_meta_query_parameters_never_fail_the_server(fuzz_client: httpx.Client, params: list) -> None:
    query = "&".join(f"meta.{_percent(k)}={_percent(v)}" for k, v in params)
    if len(query) > 12_000:  # the server's request-line limit, not the API's
        query = query[:12_000].rsplit("&", 1)[0] or "meta.x=1"
    r = fuzz_client.get(f"/search?q=x&mode=keyword&{query}")
    _check(r, {"invalid_filters"})


@seed(20269)
@HOSTILE
@given(metadata=st.none() | HOSTILE_BYTES, file_metadata=st.none() | HOSTILE_BYTES, wrap=st.booleans())
def test_upload_metadata_parts_never_fail_the_server(
    fuzz_client: httpx.Client, metadata: bytes | None, file_metadata: bytes | None, wrap: bool
) -> None:
    if file_metadata is not None and wrap:  # keyed by the filename, as it should be
        file_metadata = b'{"f.txt": ' + file_metadata + b"}"
    parts = [("files", ("f.txt", f"fuzzed metadata {uuid.uuid4()}".encode(), "text/plain"))]
    parts += [(name, (None, raw)) for name, raw in (("metadata", metadata), ("file_metadata", file_metadata)) if raw]
    _check(fuzz_client.post("/upload", files=parts), {"invalid_metadata"})


@seed(20269)
@HOSTILE
@given(metadata=HOSTILE_JSON, path=st.sampled_from(["/query", "/generate-text-with-context"]))
def test_raw_json_in_filters_never_fails_the_server(fuzz_client: httpx.Client, metadata: str, path: str) -> None:
    body = ('{"query": "x", "mode": "keyword", "filters": {"metadata": ' + metadata + "}}").encode(
        "utf-8", "surrogatepass"
    )
    r = fuzz_client.post(path, content=body, headers={"content-type": "application/json"})
    _check(r, {"invalid_filters", "invalid_request"})
