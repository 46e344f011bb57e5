"""HTML: the content without the page furniture, in order, in its declared encoding, and nesting limits."""

from pathlib import Path

import pytest

from app.intake import filetypes
from app.status import ErrorCode
from tests.fixtures.documents import HTML_PAGE, deep_html
from tests.fixtures.parsing import parse_fails, read_elements
from worker.parsing import Element


def test_html_keeps_content_and_drops_page_furniture(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "tides.html", HTML_PAGE.format(tag="").encode(), filetypes.HTML)
    title, times = ("Tide tables",), ("Tide tables", "Times")
    assert els == [
        Element("Tide tables", "title", None, title),
        Element("The tide rises twice a day.\nSpring tides follow the full moon.", "paragraph", None, title),
        Element("Times", "heading", None, times),
        Element("High water at 06:12", "list", None, times),
        Element("Low water at 12:30", "list", None, times),
        Element("Heights", "caption", None, times),
        Element("Time | Height", "table", None, times),
        Element("06:12 | 4.2 m", "table", None, times),
        Element("Figure 1: tide curve for March", "caption", None, times),
    ]


def test_html_text_around_nested_blocks_stays_in_order(tmp_path: Path) -> None:
    page = b"<div>Before the list<ul><li><p>one</p></li></ul>after the list <b>in bold</b></div><p>Last</p>"
    els, _ = read_elements(tmp_path, "order.html", page, filetypes.HTML)
    assert [(e.text, e.kind) for e in els] == [
        ("Before the list", "paragraph"),
        ("one", "list"),
        ("after the list in bold", "paragraph"),
        ("Last", "paragraph"),
    ]


def test_html_encoding_from_meta_charset(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>Café crème, déjà vu</p></body></html>'
    els, _ = read_elements(tmp_path, "fr.html", page.encode("cp1252"), filetypes.HTML)
    assert [e.text for e in els] == ["Café crème, déjà vu"]


@pytest.mark.parametrize(
    "wrapper",
    ['<div class="sidebar-layout">', "<aside>", '<form id="aspnetForm" action="/">'],
    ids=["class-name", "aside", "form"],
)
def test_html_page_inside_one_furniture_element_is_read_after_all(tmp_path: Path, wrapper: str) -> None:
    close = "</" + wrapper[1:].split()[0].rstrip(">") + ">"
    page = f"<html><body>{wrapper}<p>The whole page sits in one wrapper.</p>{close}</body></html>"
    els, _ = read_elements(tmp_path, "wrapped.html", page.encode(), filetypes.HTML)
    assert [e.text for e in els] == ["The whole page sits in one wrapper."]


def test_html_nested_too_deep_fails(tmp_path: Path) -> None:
    err = parse_fails(tmp_path, "deep.html", deep_html(10_000), filetypes.HTML)
    assert err.code == ErrorCode.HTML_TOO_DEEP and "256 levels" in err.message
    els, _ = read_elements(tmp_path, "ok.html", deep_html(200), filetypes.HTML)
    assert [e.text for e in els] == ["deep text"]
