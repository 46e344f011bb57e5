"""Search through the real stack: vector, keyword and hybrid modes, filters, highlights,
upload metadata, the interaction log, and what bad input gets (422 with a code)."""

import asyncio
import json
import random
import string
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector, register_vector_async
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pymongo import MongoClient

from app.intake import metadata as upload_metadata
from app.retrieval.filters import Filters, from_query_params
from app.retrieval.params import SearchParams
from app.retrieval.search import retrieve, rrf, search
from app.stores.chunks.reader import (
    LEXEME_TSQUERY,
    ChunkSearch,
    any_word_tsquery,
    keyword_queries,
    tsquery_literal,
    word_chunks,
)
from app.stores.chunks.schema import ensure_schema, schema_sql
from app.stores.chunks.where import glob_to_like
from tests.helpers import make_pdf, run_worker, wait_final
from tests.stack import Stack

CRANE = (
    "Harbour crane inspection report. The inspection of the quay crane found corrosion on the lower boom "
    "and worn brake linings on the hoist. The crane stays in service with a reduced load limit of 20 tonnes "
    "until the boom is repaired."
)
MINUTES = (
    "Minutes of the facilities meeting. The cafeteria renovation starts in May and the parking garage will be "
    "repainted over the summer. The committee also approved new bicycle racks near the east entrance. "
    "Spare valve cartridge QX-5521-K was ordered for the boiler room."
)
T = TypeVar("T")
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


def delete_files(client: httpx.Client, file_ids: Iterable[str]) -> None:
    """Leave the session's shared database as we found it: later tests query it without filters."""
    for fid in file_ids:
        assert client.delete(f"/files/{fid}").status_code == 204


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


def wait_interaction(stack: Stack, interaction_id: str, timeout: float = 10) -> dict:
    """The interaction is written after the response: wait for it."""
    assert interaction_id
    with MongoClient(stack.env["MONGO_URL"]) as mongo:
        col = mongo[stack.env["MONGO_DB"]]["interactions"]
        deadline = time.monotonic() + timeout
        while (doc := col.find_one({"_id": interaction_id})) is None:
            assert time.monotonic() < deadline, f"interaction {interaction_id} not logged"
            time.sleep(0.1)
        return doc


# --- the SQL directly: tenancy, iterative index scans, schema upgrade ------------------------------


def with_pool(stack: Stack, work: Callable[[AsyncConnectionPool], Awaitable[T]], extra_options: str = "") -> T:
    """Run `work` with a pool whose sessions may not use a sequential scan, a bitmap scan or a sort:
    the HNSW index it is, as on a table too big for anything else. One event loop for it all."""

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await register_vector_async(conn)

    async def main() -> T:
        options = f"-c enable_seqscan=off -c enable_bitmapscan=off -c enable_sort=off {extra_options}"
        async with AsyncConnectionPool(
            stack.env["DATABASE_URL"],
            min_size=1,
            max_size=2,
            configure=configure,
            kwargs={"row_factory": dict_row, "options": options},
        ) as pool:
            return await work(pool)

    return asyncio.run(main())


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_filtered_vector_search_still_returns_k_with_an_iterative_index_scan(stack: Stack) -> None:
    tenant = f"iter-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(7)
    n, k = 3000, 10
    vectors = _unit(rng, n)
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
                "VALUES (%s, %s, %s, %s, %s, 'text/plain', %s, %s)",
                [
                    (tenant, uuid.uuid4(), 0, f"row {i}", f"r{i}.txt", vectors[i],
                     json.dumps({"rare": i % 100 == 0}))  # 1 row in 100 passes the filter
                    for i in range(n)
                ],
            )  # fmt: skip
        conn.commit()
    try:
        query_vec = _unit(rng, 1)[0]
        flt = Filters(metadata={"rare": True})
        params = SearchParams(query="x", mode="vector", k=k, filters=flt, ef_search=20)
        hits = with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, query_vec))
        assert len(hits) == k and all(h.metadata == {"rare": True} for h in hits)
        assert [h.vector_score for h in hits] == sorted((h.vector_score for h in hits), reverse=True)

        async def without_iterative_scan(pool: AsyncConnectionPool) -> tuple[int, str]:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL hnsw.ef_search = 20")
                await conn.execute("SET LOCAL hnsw.iterative_scan = off")
                sql = ("SELECT id FROM chunks WHERE tenant = %(t)s AND metadata @> '{\"rare\": true}' "
                       "ORDER BY embedding <=> %(v)s LIMIT %(k)s")  # fmt: skip
                args = {"t": tenant, "v": query_vec, "k": k}
                plan = "\n".join(r["QUERY PLAN"] for r in await (await conn.execute("EXPLAIN " + sql, args)).fetchall())
                rows = await (await conn.execute(sql, args)).fetchall()
                return len(rows), plan

        found, plan = with_pool(stack, without_iterative_scan)
        assert "chunks_embedding_hnsw" in plan  # the index is what is scanned
        assert found < k  # ef_search candidates, then the filter: too few without iterative scans
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_a_filter_that_outlasts_the_index_scan_still_returns_the_k_nearest(stack: Stack) -> None:
    """An iterative scan stops after hnsw.max_scan_tuples rows: a filter few rows pass then came back
    short although more matched. The search counts such a result again, exactly."""
    tenant = f"scan-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(11)
    n, k = 4000, 5
    vectors = _unit(rng, n)
    rare = [i for i in range(n) if i % 400 == 0]  # 10 rows pass the filter
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
                "VALUES (%s, %s, 0, %s, 'r.txt', 'text/plain', %s, %s)",
                [(tenant, uuid.uuid4(), f"row {i}", vectors[i], json.dumps({"rare": i in rare})) for i in range(n)],
            )
        conn.commit()
    try:
        query_vec = _unit(rng, 1)[0]
        params = SearchParams(query="x", mode="vector", k=k, filters=Filters(metadata={"rare": True}), ef_search=20)

        async def index_only(pool: AsyncConnectionPool) -> int:  # what the index scan alone finds
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL hnsw.ef_search = 20")
                await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                sql = ("SELECT id FROM chunks WHERE tenant = %(t)s AND metadata @> '{\"rare\": true}' "
                       "ORDER BY embedding <=> %(v)s LIMIT %(k)s")  # fmt: skip
                return len(await (await conn.execute(sql, {"t": tenant, "v": query_vec, "k": k})).fetchall())

        limit = "-c hnsw.max_scan_tuples=100"  # gives up long before it has read the 1 row in 400 that passes
        assert with_pool(stack, index_only, limit) < k
        hits = with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, query_vec), limit)
        nearest = sorted(rare, key=lambda i: -float(vectors[i] @ query_vec))[:k]
        assert [h.text for h in hits] == [f"row {i}" for i in nearest]
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_hybrid_runs_the_keyword_leg_while_the_query_is_embedded(stack: Stack) -> None:
    """The keyword leg does not wait for the query's vector: with an embedder that returns only once
    a connection has been given back, a hybrid search finishes, and with the keyword leg's hit."""
    tenant = f"overlap-{uuid.uuid4().hex[:8]}"
    vector = _unit(np.random.default_rng(5), 1)[0]
    ensure_schema(stack.env["DATABASE_URL"])  # idempotent; this test may run before the API made it
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
            "VALUES (%s, %s, 0, %s, 'crane.txt', 'text/plain', %s)",
            (tenant, uuid.uuid4(), CRANE, vector),
        )
        conn.commit()
    released = threading.Event()

    class ReleaseSignal:  # the pool, noting when a connection comes back
        def __init__(self, pool: AsyncConnectionPool) -> None:
            self.pool = pool

        @asynccontextmanager
        async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
            async with self.pool.connection() as conn:
                yield conn
            released.set()

    class WaitingEmbedder:
        name = "waiting"
        waited: bool | None = None

        def embed(self, texts: list[str]) -> np.ndarray:
            self.waited = released.wait(timeout=5)  # a leg that waits for the vector never sets it
            return np.stack([vector] * len(texts))

    embedder = WaitingEmbedder()
    try:
        params = SearchParams(query="crane boom", mode="hybrid", k=3)
        retrieval = with_pool(stack, lambda pool: retrieve(ChunkSearch(ReleaseSignal(pool)), embedder, tenant, params))
        assert embedder.waited is True
        assert [h.filename for h in retrieval.hits] == ["crane.txt"]
        assert (retrieval.hits[0].vector_rank, retrieval.hits[0].keyword_rank) == (1, 1)
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def _insert_chunks(stack: Stack, tenant: str, texts: list[str]) -> None:
    """Chunks straight into PostgreSQL, one file each (`c<i>.txt`), with random vectors."""
    rng = np.random.default_rng(3)
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
                "VALUES (%s, %s, 0, %s, %s, 'text/plain', %s)",
                [
                    (tenant, uuid.uuid4(), t, f"c{i}.txt", v)
                    for i, (t, v) in enumerate(zip(texts, _unit(rng, len(texts)), strict=True))
                ],
            )


def test_the_any_word_fallback_leaves_out_common_words(stack: Stack) -> None:
    """No chunk has every word: the fallback looks for the uncommon ones only, so chunks that share
    just a common word stay out (with it, they would outrank the one with the rare word). Common is
    counted in the tenant's own chunks, at once: no statistics to wait for (no ANALYZE here)."""
    tenant = f"common-{uuid.uuid4().hex[:8]}"
    ensure_schema(stack.env["DATABASE_URL"])
    texts = ["Quayside quayside quayside: the quayside log."] * 30 + ["A walrus was seen near the pier."]
    _insert_chunks(stack, tenant, texts)
    try:

        def keyword(common_word_chunks: int) -> list[str]:
            params = SearchParams("quayside walrus", "keyword", 5, common_word_chunks=common_word_chunks)
            return [h.filename for h in with_pool(stack, lambda pool: search(ChunkSearch(pool), tenant, params, None))]

        assert keyword(common_word_chunks=10) == ["c30.txt"]  # quayside is in 30 chunks: left out
        everything = keyword(common_word_chunks=1000)  # nothing is that common: every word counts
        assert len(everything) == 5 and "c30.txt" not in everything
        assert keyword(common_word_chunks=0) == everything  # every word is common: all are kept
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = %s", (tenant,))


def test_word_chunks_counts_the_tenants_chunks_up_to_the_cap(stack: Stack) -> None:
    tenant, other = (f"count-{uuid.uuid4().hex[:8]}" for _ in range(2))
    ensure_schema(stack.env["DATABASE_URL"])
    _insert_chunks(stack, tenant, ["Quayside cranes."] * 12 + ["A walrus."])
    _insert_chunks(stack, other, ["Walrus, walrus."] * 20)

    async def counts(pool: AsyncConnectionPool) -> dict[str, int]:
        async with pool.connection() as conn:
            return dict(await word_chunks(conn, tenant, "the quayside walrus's zebra", cap=5))

    try:  # stop words are not lexemes; the other tenant's walruses are not counted
        assert with_pool(stack, counts) == {"quaysid": 5, "walrus": 1, "zebra": 0}
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = ANY(%s)", ([tenant, other],))


def test_the_fallback_counts_only_the_tenants_own_chunks(stack: Stack) -> None:
    """Which words the fallback leaves out is decided by the caller's chunks alone: another tenant's
    hundreds of chunks with the same word (and statistics fresh from ANALYZE that say so) change
    nothing in what this tenant finds. PostgreSQL's statistics cover every tenant: with them, tenant A's
    vocabulary decided tenant B's results, a side channel."""
    a, b = (f"{side}-{uuid.uuid4().hex[:8]}" for side in ("sidea", "sideb"))
    word = "".join(random.Random(uuid.uuid4().int).choices(string.ascii_lowercase, k=10))  # in no other chunk
    ensure_schema(stack.env["DATABASE_URL"])

    def b_finds() -> list[str]:
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("ANALYZE chunks")
        params = SearchParams(f"{word} walrus", "keyword", 5, common_word_chunks=10)  # no chunk has both
        return [h.filename for h in with_pool(stack, lambda pool: search(ChunkSearch(pool), b, params, None))]

    try:
        _insert_chunks(stack, b, [f"The {word} log was signed.", "A walrus was seen near the pier."])
        alone = b_finds()
        assert sorted(alone) == ["c0.txt", "c1.txt"]  # one chunk each: neither word is common for B
        _insert_chunks(stack, a, [f"{word} {word}: the {word} log."] * 300)
        assert b_finds() == alone
    finally:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            conn.execute("DELETE FROM chunks WHERE tenant = ANY(%s)", ([a, b],))


def test_any_word_tsquery_and_its_literals(stack: Stack) -> None:
    assert any_word_tsquery([("return", 60_000), ("walrus", 0), ("pier", 12)], 5000) == "'walrus' | 'pier'"
    assert any_word_tsquery([("return", 60_000), ("valu", 30_000)], 5000) == "'return' | 'valu'"  # all common
    assert any_word_tsquery([], 5000) is None
    odd = ["it's", "c:\\temp", "a|b", "x'\\'y"]
    # the count statement quotes the lexemes it reads from the query the same way, in SQL
    in_sql = f"SELECT ({LEXEME_TSQUERY})::text FROM (SELECT %s::text AS lexeme) AS w"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:  # PostgreSQL reads each back as that one lexeme
        for lexeme in odd:
            expected = "'" + lexeme.replace("'", "''").replace("\\", "\\\\") + "'"
            assert conn.execute("SELECT querytree(%s::tsquery)", (tsquery_literal(lexeme),)).fetchone()[0] == expected
            assert conn.execute(in_sql, (lexeme,)).fetchone()[0] == expected


def test_search_is_tenant_scoped(client: httpx.Client, stack: Stack, suite: dict) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding, metadata) "
            "VALUES (%s, %s, 0, %s, 'secret.txt', 'text/plain', %s, %s)",
            (other, uuid.uuid4(), f"Secret: {CRANE}", _unit(np.random.default_rng(1), 1)[0],
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


def test_schema_upgrade_is_additive_and_idempotent(stack: Stack) -> None:
    """A database created before `uploaded_at` existed gets the column; running again changes nothing."""
    db = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin_url = stack.env["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = admin_url.rsplit("/", 1)[0] + f"/{db}"
    try:
        old = schema_sql().split("-- additive")[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(old)
            conn.execute(
                "INSERT INTO chunks (tenant, file_id, ordinal, text, filename, content_type, embedding) "
                "VALUES ('t', gen_random_uuid(), 0, 'old row', 'old.txt', 'text/plain', "
                "array_fill(0.1, ARRAY[384])::vector)"
            )
        ensure_schema(url)
        ensure_schema(url)
        with psycopg.connect(url) as conn:
            cols = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = 'chunks'")}  # fmt: skip
            assert {"uploaded_at", "metadata"} <= cols
            assert conn.execute("SELECT text, uploaded_at FROM chunks").fetchall() == [("old row", None)]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {db} WITH (FORCE)")


# --- pure functions ----------------------------------------------------------------------------


def test_rrf_fuses_ranks_with_weights() -> None:
    fused = rrf([([1, 2, 3], 1.0), ([3, 4], 1.0)], 60)
    assert [i for i, _ in fused] == [3, 1, 2, 4]  # 3 is in both lists
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    assert [i for i, _ in rrf([([1, 2], 1.0), ([2, 1], 1.0)], 60)] == [1, 2]  # a tie: the better best rank, then id
    assert [i for i, _ in rrf([([1], 0.0), ([2], 1.0)], 60)] == [2, 1]


def test_keyword_queries() -> None:
    assert keyword_queries("when did the volcano erupt") == ("when did the volcano erupt",
                                                             "when or did or the or volcano or erupt")  # fmt: skip
    for q in ['"exact phrase" volcano', "volcano -lava", "lava or ash"]:
        assert keyword_queries(q) == (q, q)  # written with operators: taken as written


def test_filter_helpers() -> None:
    assert glob_to_like("report-*.pdf") == "report-%.pdf"
    assert glob_to_like("a_b%c?.txt") == "a\\_b\\%c_.txt"
    assert from_query_params([("meta.year", "2024"), ("q", "x"), ("meta.team", "a"), ("meta.team", "b")]) == {
        "year": {"$in": ["2024", 2024]},
        "team": {"$in": ["a", "b"]},
    }
    both = from_query_params([("meta.draft", "true"), ("meta.draft", "1")])
    assert both == {"draft": {"$in": ["true", True, "1", 1]}}
    assert Filters().is_empty() and not Filters(filename="x").is_empty()
    assert Filters(uploaded_after="2024-01-01").uploaded_after.tzinfo is not None


def test_upload_metadata_rules() -> None:
    parts = {"metadata": b'{"team": "a", "tags": ["x", 1, null]}', "file_metadata": b'{"b.txt": {"team": "b"}}'}
    assert upload_metadata.per_file(parts, ["a.txt", "b.txt"]) == {
        "a.txt": {"team": "a", "tags": ["x", 1, None]},
        "b.txt": {"team": "b", "tags": ["x", 1, None]},
    }
    assert upload_metadata.per_file({}, ["a.txt"]) == {"a.txt": {}}
    for bad in [b"NaN", b'{"x": NaN}', b'{"": 1}', b'{"x": [[1]]}', b"\xff"]:
        with pytest.raises(upload_metadata.InvalidMetadata):
            upload_metadata.per_file({"metadata": bad}, ["a.txt"])
