"""The prompt: numbered passages with where they come from, and the citations read back."""

from app.answering.prompt import cited_numbers, context_messages, fit_passages, where
from tests.fixtures.chunks import hit


def test_cited_numbers() -> None:
    assert cited_numbers("A [2]. B [1, 3] and [2][4]. [9] [0]", 4) == [2, 1, 3, 4]
    assert cited_numbers("no citations", 3) == [] and cited_numbers("see [ 1 ; 2 ]", 2) == [1, 2]


def test_prompt_and_where() -> None:
    assert where(hit("x")) == "a.pdf, page 1" and where(hit("x", page=2, end=3)) == "a.pdf, pages 2-3"
    assert where(hit("x", "n.txt", None)) == "n.txt"
    hits = [hit("a" * 300), hit("b" * 300), hit("c" * 300)]
    assert len(fit_passages(hits, 650)) == 2 and len(fit_passages(hits, 100)) == 1
    messages = context_messages("Why?", hits[:2], 1000)
    assert messages[0]["role"] == "system" and "[1] (a.pdf, page 1)\naaa" in messages[1]["content"]
