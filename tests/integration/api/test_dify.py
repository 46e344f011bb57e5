"""Dify's External Knowledge API (`POST /retrieval`) against the real stack: the request and response
shapes Dify documents, its error codes (1001, 1002, 2001, and ours 3001, 3002), knowledge bases by
the `knowledge_base` metadata, `score_threshold` on 0..1 scores, and `metadata_condition`."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.retrieval.dify import MetadataCondition, UnsupportedCondition, matching
from tests.fixtures.api import wait_final
from tests.fixtures.stack import Stack
from tests.fixtures.worker import run_worker

GLACIER = (
    "Glacier survey notes. The tongue of the glacier retreated forty metres since the last survey; "
    "meltwater channels cut through the moraine on the eastern side."
)
VOLCANO = (
    "Volcano monitoring bulletin. Seismic tremor under the summit crater increased overnight and sulphur "
    "dioxide emissions doubled; the alert level stays at yellow."
)
RECIPES = "Bakery recipe card. Sourdough rises overnight in a cool room, then bakes at 240 degrees for forty minutes."
Q = {"top_k": 5, "score_threshold": 0.0}


@pytest.fixture(scope="module")
def kb(stack: Stack, api_url: str) -> Iterator[dict[str, Any]]:
    """A tenant with two knowledge bases: `geo` (glacier 2023, volcano 2024) and `food` (recipes)."""
    tenant = f"dify-{uuid.uuid4().hex[:6]}"
    files = {
        "glacier.txt": (GLACIER, {"knowledge_base": "geo", "year": 2023, "region": "north"}),
        "volcano.md": (VOLCANO, {"knowledge_base": ["geo", "hazards"], "year": 2024, "region": "south"}),
        "recipes.txt": (RECIPES, {"knowledge_base": "food", "year": 2024}),
    }
    ids = {}
    with stack.client(api_url, tenant=tenant) as client:
        for name, (text, meta) in files.items():
            r = client.post(
                "/upload", files=[("files", (name, text.encode(), "text/plain"))], data={"metadata": json.dumps(meta)}
            )
            assert r.status_code == 202, r.text
            ids[name] = r.json()["files"][0]["file_id"]
        run_worker()
        assert {d["status"] for d in wait_final(client, list(ids.values())).values()} == {"embedded"}
    yield {"tenant": tenant, "ids": ids, "key": stack.key(tenant, "read"), "url": api_url}


def retrieve(kb: dict, body: dict, key: str | None = None, headers: dict | None = None) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key or kb['key']}"} if headers is None else headers
    return httpx.post(f"{kb['url']}/retrieval", json=body, headers=auth, timeout=30)


def records(kb: dict, **body: Any) -> list[dict]:
    r = retrieve(kb, {"retrieval_setting": Q, **body})
    assert r.status_code == 200, r.text
    return r.json()["records"]


def titles(recs: list[dict]) -> list[str]:
    return [rec["title"] for rec in recs]


def test_the_response_has_dify_shape(kb: dict) -> None:
    r = retrieve(kb, {"knowledge_id": "geo", "query": "how far did the glacier retreat?", "retrieval_setting": Q})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    recs = r.json()["records"]
    assert set(r.json()) == {"records"}
    assert titles(recs)[0] == "glacier.txt"
    for rec in recs:
        assert set(rec) == {"content", "score", "title", "metadata"}
        assert isinstance(rec["content"], str) and rec["content"]
        assert 0.0 <= rec["score"] <= 1.0
        assert isinstance(rec["metadata"], dict)  # an object, never null
    top = recs[0]
    assert "forty metres" in top["content"]
    assert top["metadata"]["file_id"] == kb["ids"]["glacier.txt"] and top["metadata"]["year"] == 2023
    assert [rec["score"] for rec in recs] == sorted((rec["score"] for rec in recs), reverse=True)


def test_knowledge_id_selects_the_knowledge_base(kb: dict) -> None:
    query = "overnight"  # words of the recipes and of the volcano bulletin
    assert set(titles(records(kb, knowledge_id="geo", query=query))) == {"glacier.txt", "volcano.md"}
    assert titles(records(kb, knowledge_id="food", query=query)) == ["recipes.txt"]
    assert titles(records(kb, knowledge_id="hazards", query=query)) == ["volcano.md"]  # an array value holds it
    assert set(titles(records(kb, knowledge_id="all", query=query))) == {"glacier.txt", "volcano.md", "recipes.txt"}


def test_top_k_and_score_threshold(kb: dict) -> None:
    query = "sulphur dioxide emissions from the summit crater"
    assert len(records(kb, knowledge_id="all", query=query, retrieval_setting={"top_k": 1, "score_threshold": 0})) == 1
    everything = records(kb, knowledge_id="all", query=query)
    assert len(everything) == 3 and titles(everything)[0] == "volcano.md"
    best, rest = everything[0]["score"], [rec["score"] for rec in everything[1:]]
    assert best > 0.5 > max(rest)  # related text scores high, unrelated low: the threshold means similarity
    kept = records(kb, knowledge_id="all", query=query, retrieval_setting={"top_k": 5, "score_threshold": 0.5})
    assert titles(kept) == ["volcano.md"]
    none = records(kb, knowledge_id="all", query=query, retrieval_setting={"top_k": 5, "score_threshold": 1.0})
    assert none == []
    huge = records(kb, knowledge_id="all", query=query, retrieval_setting={"top_k": 100000, "score_threshold": 0})
    assert len(huge) == 3  # more than QUERY_MAX_K is QUERY_MAX_K


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"conditions": [{"name": "year", "comparison_operator": "is", "value": "2024"}]}, {"volcano.md"}),
        ({"conditions": [{"name": "year", "comparison_operator": "=", "value": 2023}]}, {"glacier.txt"}),
        ({"conditions": [{"name": "region", "comparison_operator": "in", "value": ["north", "west"]}]},
         {"glacier.txt"}),
        ({"logical_operator": "or", "conditions": [
            {"name": "region", "comparison_operator": "is", "value": "north"},
            {"name": "region", "comparison_operator": "is", "value": "south"}]}, {"glacier.txt", "volcano.md"}),
        ({"logical_operator": "and", "conditions": [
            {"name": "region", "comparison_operator": "in", "value": ["north", "south"]},
            {"name": "year", "comparison_operator": "is", "value": "2024"}]}, {"volcano.md"}),
        ({"conditions": [{"name": "region", "comparison_operator": "is", "value": "north"},
                         {"name": "region", "comparison_operator": "is", "value": "south"}]}, set()),
        ({"conditions": [{"name": "knowledge_base", "comparison_operator": "is", "value": "food"}]}, set()),
        ({"conditions": []}, {"glacier.txt", "volcano.md"}),
    ],
)  # fmt: skip
def test_metadata_condition_filters_within_the_knowledge_base(kb: dict, condition: dict, expected: set) -> None:
    got = records(kb, knowledge_id="geo", query="survey bulletin overnight", metadata_condition=condition)
    assert set(titles(got)) == expected


@pytest.mark.parametrize(
    "condition",
    [
        {"conditions": [{"name": "year", "comparison_operator": ">", "value": 2023}]},
        {"conditions": [{"name": "region", "comparison_operator": "contains", "value": "nor"}]},
        {"conditions": [{"name": "region", "comparison_operator": "not empty"}]},
        {"logical_operator": "or", "conditions": [
            {"name": "region", "comparison_operator": "is", "value": "north"},
            {"name": "year", "comparison_operator": "is", "value": "2024"}]},
        {"conditions": [{"name": "region", "comparison_operator": "is", "value": ["a", "b"]}]},
        {"conditions": [{"name": ["region", "year"], "comparison_operator": "is", "value": "x"}]},
    ],
)  # fmt: skip
def test_unsupported_conditions_are_refused_with_3002(kb: dict, condition: dict) -> None:
    r = retrieve(
        kb, {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": Q, "metadata_condition": condition}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error_code"] == 3002 and r.json()["error_msg"].startswith("metadata_condition:")


def test_an_unknown_knowledge_base_is_2001(kb: dict, stack: Stack) -> None:
    r = retrieve(kb, {"knowledge_id": "no-such-kb", "query": "glacier", "retrieval_setting": Q})
    assert r.status_code == 404
    assert r.json() == {"error_code": 2001, "error_msg": "The knowledge base 'no-such-kb' does not exist."}
    other = stack.key(f"dify-other-{uuid.uuid4().hex[:6]}", "read")  # another tenant's geo is not this one's
    r = retrieve(kb, {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": Q}, key=other)
    assert r.status_code == 404 and r.json()["error_code"] == 2001
    assert retrieve(kb, {"knowledge_id": "all", "query": "glacier", "retrieval_setting": Q}, key=other).json() == {
        "records": []
    }


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1001),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 1001),
        ({"Authorization": "Bearer"}, 1001),
        ({"Authorization": "Bearer not-a-key"}, 1002),
        ({"Authorization": "Bearer dp_0123456789ab_" + "x" * 43}, 1002),
    ],
)
def test_authorization_errors(kb: dict, headers: dict, code: int) -> None:
    r = retrieve(kb, {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": Q}, headers=headers)
    assert r.status_code == 403
    body = r.json()
    assert set(body) == {"error_code", "error_msg"} and body["error_code"] == code and body["error_msg"]


def test_a_key_without_read_is_1002_and_auth_comes_before_the_body(kb: dict, stack: Stack) -> None:
    writer = stack.key(kb["tenant"], "write")
    r = retrieve(kb, {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": Q}, key=writer)
    assert r.status_code == 403 and r.json()["error_code"] == 1002 and "read" in r.json()["error_msg"]
    r = retrieve(kb, {"query": ""}, headers={})
    assert r.status_code == 403 and r.json()["error_code"] == 1001


@pytest.mark.parametrize(
    "body",
    [
        {"query": "glacier", "retrieval_setting": Q},
        {"knowledge_id": "geo", "retrieval_setting": Q},
        {"knowledge_id": "geo", "query": "   ", "retrieval_setting": Q},
        {"knowledge_id": "geo", "query": "glacier"},
        {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": {"top_k": 0, "score_threshold": 0}},
        {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": {"top_k": 3, "score_threshold": 1.5}},
        {"knowledge_id": "geo", "query": "a\u0000b", "retrieval_setting": Q},
        {"knowledge_id": "geo", "query": "glacier", "retrieval_setting": Q, "metadata_condition": {"conditions": 1}},
        ["not", "an", "object"],
    ],
)
def test_invalid_bodies_are_3001(kb: dict, body: Any) -> None:
    r = retrieve(kb, body)
    assert r.status_code == 422, r.text
    assert r.json()["error_code"] == 3001 and r.json()["error_msg"]


def test_a_body_that_is_not_json_is_3001(kb: dict) -> None:
    r = httpx.post(
        f"{kb['url']}/retrieval",
        content=b"{not json",
        headers={"Authorization": f"Bearer {kb['key']}", "content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422 and r.json()["error_code"] == 3001


def test_extra_fields_are_ignored(kb: dict) -> None:
    recs = records(kb, knowledge_id="food", query="sourdough", future_field={"x": 1})
    assert titles(recs) == ["recipes.txt"]


def test_the_mapping_to_search_filters() -> None:
    cond = MetadataCondition.model_validate(
        {"conditions": [{"name": "year", "comparison_operator": "is", "value": "2024"}]}
    )
    m = matching("geo", cond)
    assert m.filters is not None and m.filters.metadata == {"year": {"$in": ["2024", 2024]}, "knowledge_base": "geo"}
    assert matching("all", None).filters is None
    with pytest.raises(UnsupportedCondition):
        matching("all", MetadataCondition.model_validate({"conditions": [{"name": "a", "comparison_operator": "≠"}]}))


def test_openapi_describes_retrieval(api_url: str) -> None:
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    op = spec["paths"]["/retrieval"]["post"]
    assert {"200", "403", "404", "422", "429"} <= set(op["responses"])
    body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(spec["components"]["schemas"][body]["required"]) == {"knowledge_id", "query", "retrieval_setting"}
