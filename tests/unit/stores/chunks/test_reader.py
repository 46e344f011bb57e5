"""The keyword statements' query text, without PostgreSQL."""

from app.stores.chunks.reader import keyword_queries


def test_keyword_queries() -> None:
    assert keyword_queries("when did the volcano erupt") == ("when did the volcano erupt",
                                                             "when or did or the or volcano or erupt")  # fmt: skip
    for q in ['"exact phrase" volcano', "volcano -lava", "lava or ash"]:
        assert keyword_queries(q) == (q, q)  # written with operators: taken as written
