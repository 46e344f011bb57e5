"""The evaluation's relevance rules and percentiles (the command itself: tests/integration/cli)."""

from app.cli.eval import first_relevant, percentile, relevant


def test_relevance_rules() -> None:
    hit = {"file_id": "f1", "filename": "a.pdf", "page_start": 2, "page_end": 3, "text": "Part  SK-4471-B\nis here"}
    assert relevant(hit, {"filename": "a.pdf"}) and relevant(hit, {"file": "f1", "page": 3})
    assert not relevant(hit, {"filename": "a.pdf", "page": 4}) and not relevant(hit, {"filename": "b.pdf"})
    assert relevant(hit, {"filename": "a.pdf", "answer_substring": "part sk-4471-b is"})
    assert not relevant({**hit, "page_start": None, "page_end": None}, {"filename": "a.pdf", "page": 1})
    assert first_relevant([{"filename": "x"}, hit, hit], {"filename": "a.pdf"}) == 2
    assert first_relevant([], {"filename": "a.pdf"}) is None
    assert percentile([1, 2, 3, 4], 0.5) == 2.5 and percentile([5], 0.95) == 5
