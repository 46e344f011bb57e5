"""Search filters: globs, `meta.*` query parameters, dates."""

from app.retrieval.filters import Filters, from_query_params
from app.stores.chunks.where import glob_to_like


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
