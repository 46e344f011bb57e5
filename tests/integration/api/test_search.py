"""Search through the real stack: vector, keyword and hybrid modes, filters, highlights,
upload metadata, the interaction log, and what bad input gets (422 with a code)."""

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from app.retrieval.filters import from_query_params
from app.retrieval.params import SearchParams
from app.retrieval.search import search
from app.stores.chunks.reader import ChunkSearch
from tests.fixtures.api import delete_files, wait_final, wait_interaction
from tests.fixtures.chunks import unit_vectors, with_pool
from tests.fixtures.documents import CRANE, make_pdf
from tests.fixtures.stack import Stack
from tests.fixtures.worker import run_worker

MINUTES = (
    "Minutes of the facilities meeting. The cafeteria renovation starts in May and the parking garage will be "
    "repainted over the summer. The committee also approved new bicycle racks near the east entrance. "
    "Spare valve cartridge QX-5521-K was ordered for the boiler room."
)


NEAR_CODES = ["QX-5521-J", "QX-5512-K", "QX-5521-L", "QX-2155-K", "QX-5251-K"]


def post_upload(client: httpx.Client, files: list[tuple[str, bytes]], **fields: str) -> httpx.Response:
    return client.post(
        "/upload", files=[("files", (n, d, "application/octet-stream")) for n, d in files], data=fields or None
    )


@pytest.fixture(scope="module")
def suite(api_url: str, stack: Stack) -> Iterator[dict]:
    """Two files on the same topic (uploaded a moment apart), and a code that only one file has."""
    with stack.client(api_url, timeout=60) as client:
        suite = _upload_suite(client)
        yield suite
        delete_files(client, suite["ids"].values())


def _upload_suite(client: httpx.Client) -> dict:
    tag = f"search-{uuid.uuid4().hex[:8]}"
    r = post_upload(
        client,
        [("alpha-crane.pdf", make_pdf([f"Alpha site. {CRANE}", "Appendix: photographs of the boom."]))],
        metadata=json.dumps({"suite": tag, "team": "alpha", "year": 2023, "tags": ["cranes", "audit"]}),
    )
    assert r.status_code == 202, r.text
    alpha = r.json()["files"][0]["file_id"]
    time.sleep(1.0)
    between = datetime.now(UTC)
    time.sleep(1.0)
    files = [("beta-crane.md", f"# Beta site\n\n{CRANE}\n".encode()), ("minutes.txt", MINUTES.encode())]
    files += [(f"part-{c}.txt", f"Part {c}: valve cartridge. Order code {c}. Spare part {c} for valves.".encode())
              for c in NEAR_CODES]  # fmt: skip
    # the metadata part after the files, and per-file metadata merged over it
    r = client.post(
        "/upload",
        files=[("files", (n, d, "application/octet-stream")) for n, d in files]
        + [("file_metadata", (None, json.dumps({"beta-crane.md": {"team": "beta", "year": 2024}})))]
        + [("metadata", (None, json.dumps({"suite": tag})))],
    )
    assert r.status_code == 202, r.text
    ids = {f["filename"]: f["file_id"] for f in r.json()["files"]}
    ids["alpha-crane.pdf"] = alpha
    run_worker()
    docs = wait_final(client, list(ids.values()))
    assert {d["status"] for d in docs.values()} == {"embedded"}, docs
    return {"tag": tag, "ids": ids, "between": between, "docs": docs}


def query(client: httpx.Client, q: str, tag: str, mode: str = "hybrid", k: int = 10, **filters) -> list[dict]:
    r = client.post(
        "/query", json={"query": q, "k": k, "mode": mode, "filters": {"metadata": {"suite": tag}, **filters}}
    )
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_upload_metadata_is_stored_on_the_file_and_its_chunks(client: httpx.Client, suite: dict) -> None:
    docs, ids, tag = suite["docs"], suite["ids"], suite["tag"]
    assert docs[ids["alpha-crane.pdf"]]["metadata"] == {"suite": tag, "team": "alpha", "year": 2023,
                                                         "tags": ["cranes", "audit"]}  # fmt: skip
    assert docs[ids["beta-crane.md"]]["metadata"] == {"suite": tag, "team": "beta", "year": 2024}
    assert docs[ids["minutes.txt"]]["metadata"] == {"suite": tag}
    hits = query(client, "crane corrosion", tag, k=3)
    by_file = {h["file_id"]: h for h in hits}
    assert by_file[ids["beta-crane.md"]]["metadata"]["team"] == "beta"


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_filters_keep_only_the_filtered_file(client: httpx.Client, suite: dict, mode: str) -> None:
    ids, tag = suite["ids"], suite["tag"]
    alpha, beta = ids["alpha-crane.pdf"], ids["beta-crane.md"]
    q = "crane boom corrosion inspection"
    unfiltered = {h["file_id"] for h in query(client, q, tag, mode)}
    assert {alpha, beta} <= unfiltered  # the query matches in both files

    cases = {
        alpha: [
            {"file_ids": [alpha]},
            {"content_types": ["application/pdf"]},
            {"filename": "ALPHA-*.pdf"},
            {"metadata": {"suite": tag, "team": "alpha"}},
            {"metadata": {"suite": tag, "year": {"$in": [2022, 2023]}}},
            {"metadata": {"suite": tag, "tags": "audit"}},  # an array value contains it
            {"uploaded_before": suite["between"].isoformat()},
        ],
        beta: [
            {"file_ids": [beta]},
            {"content_types": ["text/markdown"]},
            {"filename": "beta-cran?.md"},
            {"metadata": {"suite": tag, "team": {"$in": ["beta", "gamma"]}}},
            {"metadata": {"suite": tag, "year": 2024}},
            {"uploaded_after": suite["between"].isoformat()},
        ],
    }
    for expected, filter_list in cases.items():
        other = beta if expected == alpha else alpha
        for flt in filter_list:
            found = {h["file_id"] for h in query(client, q, tag, mode, **flt)}
            assert expected in found and other not in found, (mode, flt)
            if "uploaded_after" not in flt:  # the other files of beta's request were uploaded with it
                assert found == {expected}, (mode, flt)
    # nothing matches: an empty list, not an error
    assert query(client, q, tag, mode, metadata={"suite": tag, "year": "2023"}) == []  # types count
    assert query(client, q, tag, mode, filename="nothing-*.pdf") == []


def test_get_search_with_query_parameters(client: httpx.Client, suite: dict) -> None:
    ids, tag = suite["ids"], suite["tag"]
    r = client.get("/search", params=[("q", "crane corrosion"), ("k", "5"), ("meta.suite", tag), ("meta.year", "2024")])
    assert r.status_code == 200, r.text
    assert {h["file_id"] for h in r.json()["results"]} == {ids["beta-crane.md"]}
    params = [("q", "crane corrosion"), ("meta.suite", tag), ("file_id", ids["alpha-crane.pdf"]), ("mode", "keyword")]
    hits = client.get("/search", params=params).json()["results"]
    assert {h["file_id"] for h in hits} == {ids["alpha-crane.pdf"]}
    hits = client.get("/search", params={"q": "crane", "meta.suite": tag, "content_type": "text/markdown"}).json()
    assert {h["filename"] for h in hits["results"]} == {"beta-crane.md"}


def test_exact_codes_found_by_keyword_and_hybrid_where_vector_misses(client: httpx.Client, suite: dict) -> None:
    ids, tag = suite["ids"], suite["tag"]
    target = ids["minutes.txt"]
    vector = query(client, "QX-5521-K", tag, "vector", k=3)
    assert target not in [h["file_id"] for h in vector]  # near-identical codes look closer in meaning
    keyword = query(client, "QX-5521-K", tag, "keyword", k=3)
    assert [h["file_id"] for h in keyword] == [target]  # the exact code, and nothing else
    hybrid = query(client, "QX-5521-K", tag, "hybrid", k=3)
    assert hybrid[0]["file_id"] == target
    assert hybrid[0]["keyword_rank"] == 1 and hybrid[0]["score"] > hybrid[1]["score"]
    # a natural question with the code in it, too
    assert query(client, "when was cartridge QX-5521-K ordered?", tag, "hybrid", k=3)[0]["file_id"] == target


def test_result_fields_and_highlights(client: httpx.Client, suite: dict) -> None:
    tag = suite["tag"]
    r = client.post(
        "/query",
        json={"query": "worn brake linings", "k": 2, "highlight": True, "filters": {"metadata": {"suite": tag}}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "hybrid" and body["latency_ms"]["total_ms"] > 0
    top = body["results"][0]
    assert "brake linings" in top["text"] and top["filename"] in {"alpha-crane.pdf", "beta-crane.md"}
    assert {"chunk_id", "file_id", "chunk_index", "page_start", "page_end", "heading_path", "content_type"} <= set(top)
    assert top["vector_rank"] and top["keyword_rank"] and top["vector_score"] > 0 and top["keyword_score"] > 0
    assert any("<mark>brake</mark> <mark>linings</mark>" in h for h in top["highlights"])
    pdf_hit = next(h for h in body["results"] if h["filename"] == "alpha-crane.pdf")
    assert pdf_hit["page_start"] == 1 and pdf_hit["page_end"] in (1, 2)  # short pages share a chunk
    md_hit = query(client, "worn brake linings", suite["tag"], filename="beta-crane.md")[0]
    assert md_hit["heading_path"] == ["Beta site"]


def test_hybrid_weights_from_the_request(client: httpx.Client, suite: dict) -> None:
    tag, target = suite["tag"], suite["ids"]["minutes.txt"]
    body = {"query": "QX-5521-K", "k": 3, "filters": {"metadata": {"suite": tag}}}
    only_vector = client.post("/query", json={**body, "keyword_weight": 0}).json()["results"]
    assert only_vector[0]["file_id"] != target
    only_keyword = client.post("/query", json={**body, "vector_weight": 0}).json()["results"]
    assert only_keyword[0]["file_id"] == target


def _code(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["message"]
    return detail["code"]


def test_bad_input_is_422_with_a_code(client: httpx.Client) -> None:
    def post(body: object) -> str:
        return _code(client.post("/query", json=body))

    assert post({"query": "", "k": 3}) == "invalid_query"
    assert post({"query": "   "}) == "invalid_query"
    assert post({"k": 3}) == "invalid_query"
    assert post({"query": "x", "k": 0}) == "invalid_k"
    assert post({"query": "x", "k": "many"}) == "invalid_k"
    assert post({"query": "x", "k": 10_000}) == "k_too_large"
    assert post({"query": "x", "mode": "semantic"}) == "invalid_mode"
    assert post({"query": "x", "surprise": 1}) == "invalid_request"
    assert post({"query": "x", "vector_weight": -1}) == "invalid_request"
    for filters in [
        {"bogus": 1},
        {"file_ids": ["not-a-uuid"]},
        {"file_ids": []},
        {"content_types": "application/pdf"},
        {"metadata": {"team": ["a", "b"]}},
        {"metadata": {"team": {"$nin": ["a"]}}},
        {"metadata": {"team": {"$in": []}}},
        {"metadata": {"team": {"nested": {"x": 1}}}},
        {"metadata": "team=a"},
        {"uploaded_after": "yesterday"},
        {"uploaded_after": "2024-02-01", "uploaded_before": "2024-01-01"},
        {"filename": ""},
        [],
    ]:
        assert post({"query": "x", "filters": filters}) == "invalid_filters", filters
    r = client.post("/query", content=b"{not json", headers={"content-type": "application/json"})
    assert _code(r) == "invalid_request"
    # text PostgreSQL cannot hold: NUL, a lone surrogate (valid JSON escapes, both)
    for text in ["a\x00b", "\ud800"]:
        raw = json.dumps({"query": text}).encode()
        assert _code(client.post("/query", content=raw, headers={"content-type": "application/json"})) == (
            "invalid_query"
        )
        raw = json.dumps({"query": "x", "filters": {"metadata": {"k": text}}}).encode()
        assert _code(client.post("/query", content=raw, headers={"content-type": "application/json"})) == (
            "invalid_filters"
        )
    assert _code(client.get("/search", params={"q": "a\x00b"})) == "invalid_query"
    assert _code(client.get("/search")) == "invalid_query"
    assert _code(client.get("/search", params={"q": "x", "mode": "fuzzy"})) == "invalid_mode"
    assert _code(client.get("/search", params={"q": "x", "k": 1000})) == "k_too_large"
    assert _code(client.get("/search", params={"q": "x", "file_id": "nope"})) == "invalid_filters"
    assert _code(client.get("/search", params={"q": "x", "uploaded_after": "soon"})) == "invalid_filters"
    assert _code(client.get("/search", params={"q": "x", "uploaded_after": "2025-01-02",
                                                "uploaded_before": "2025-01-01"})) == "invalid_filters"  # fmt: skip
    # operators and punctuation in a keyword query are never an error
    for q in ['"unterminated', "-", "or or", "!!! & | :*", "'; DROP TABLE chunks; --", "the"]:
        for mode in ("keyword", "hybrid"):
            assert client.post("/query", json={"query": q, "mode": mode}).status_code == 200, q


def test_numbers_json_cannot_store_are_refused_in_filters(client: httpx.Client) -> None:
    """NaN, Infinity and 1e400 (read as inf) reached PostgreSQL's jsonb, which refused them: a 500. Integers
    past 64 bits can match no stored metadata (app/intake/metadata.py keeps them out): refused alike."""
    for token in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**63), str(-(2**63) - 1)):
        for cond in (token, '{"$in": [1, ' + token + "]}"):
            for path in ("/query", "/generate-text-with-context"):
                body = '{"query": "x", "filters": {"metadata": {"n": ' + cond + "}}}"
                r = client.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 422, (path, body, r.text)
                detail = r.json()["detail"]
                assert detail["code"] == "invalid_filters" and "finite" in detail["message"], (body, detail)
    for field in ("vector_weight", "keyword_weight"):
        for token in ("NaN", "Infinity", "-Infinity", "1e400"):
            body = '{"query": "x", "' + field + '": ' + token + "}"
            r = client.post("/query", content=body, headers={"content-type": "application/json"})
            detail = r.json()["detail"]
            assert r.status_code == 422 and detail["code"] == "invalid_request", r.text
            assert detail["message"].startswith(field) and "finite" in detail["message"], detail
    ok = '{"query": "x", "filters": {"metadata": {"n": {"$in": [' + f"{2**63 - 1}, {-(2**63)}, 1.5e300" + "]}}}}"
    assert client.post("/query", content=ok, headers={"content-type": "application/json"}).status_code == 200


def test_a_meta_parameter_that_is_no_storable_number_matches_as_a_string(client: httpx.Client) -> None:
    """`meta.x=<5000 digits>` was a 500 (json.loads refuses integers of more than 4300 digits), and so were
    400 digits and a fraction (inf, which jsonb refuses) and `01` (let through by the pattern; not JSON)."""
    for value in ("9" * 5000, "9" * 400 + ".5", str(2**64), "-" + "1" * 30, "01", "-"):
        assert from_query_params([("meta.x", value)]) == {"x": value}
        r = client.get("/search", params={"q": "x", "meta.x": value})
        if len(value) > 1000:  # as a string: longer than a filter's string may be
            assert r.status_code == 422 and r.json()["detail"]["code"] == "invalid_filters", r.text
        else:
            assert r.status_code == 200, (value, r.text)
    assert from_query_params([("meta.x", str(2**63 - 1))]) == {"x": {"$in": [str(2**63 - 1), 2**63 - 1]}}
    assert from_query_params([("meta.x", "-1.5")]) == {"x": {"$in": ["-1.5", -1.5]}}


def test_every_query_is_logged(client: httpx.Client, stack: Stack, suite: dict) -> None:
    tag = suite["tag"]
    r = client.post("/query", json={"query": "crane brakes", "k": 2, "filters": {"metadata": {"suite": tag}}})
    body = r.json()
    doc = wait_interaction(stack, body["interaction_id"])
    assert doc["endpoint"] == "query" and doc["query"] == "crane brakes" and doc["mode"] == "hybrid"
    assert doc["k"] == 2 and json.loads(doc["filters"]) == {"metadata": {"suite": tag}}
    assert [x["chunk_id"] for x in doc["retrieved"]] == [h["chunk_id"] for h in body["results"]]
    assert doc["retrieved"][0]["score"] == body["results"][0]["score"]
    assert {"embed_ms", "vector_ms", "keyword_ms", "search_ms", "total_ms"} <= set(doc["latency_ms"])
    assert doc["tenant"] == "default"
    r = client.get("/search", params={"q": "crane", "mode": "keyword", "meta.suite": tag})
    doc = wait_interaction(stack, r.json()["interaction_id"])
    assert doc["endpoint"] == "search" and doc["mode"] == "keyword"
    assert "keyword_ms" in doc["latency_ms"] and not {"embed_ms", "vector_ms"} & set(doc["latency_ms"])


def test_search_is_tenant_scoped(client: httpx.Client, stack: Stack, suite: dict) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
            "VALUES (%s, %s, 0, %s, 'secret.txt', 'text/plain', %s, %s)",
            (other, uuid.uuid4(), f"Secret: {CRANE}", unit_vectors(np.random.default_rng(1), 1)[0],
             json.dumps({"suite": suite["tag"]})),
        )  # fmt: skip
        conn.commit()
    try:
        for mode in ("vector", "keyword", "hybrid"):
            assert "secret.txt" not in {h["filename"] for h in query(client, "Secret crane", suite["tag"], mode)}
        params = SearchParams("secret crane", "keyword", 5)
        hits = with_pool(stack, lambda pool: search(ChunkSearch(pool), other, params, None))
        assert [h.filename for h in hits] == ["secret.txt"]
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (other,))


def test_query_validation(client: httpx.Client) -> None:
    assert client.post("/query", json={"query": "", "k": 3}).status_code == 422
    assert client.post("/query", json={"query": "x", "k": 0}).status_code == 422
    r = client.post("/query", json={"query": "x", "k": 10_000})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "k_too_large"
