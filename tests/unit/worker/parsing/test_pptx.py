"""PPTX: slides are pages (titles, text, tables, notes), and the slide limit."""

from pathlib import Path

from app.intake import filetypes
from app.status import ErrorCode
from tests.fixtures.documents import make_pptx
from tests.fixtures.parsing import parse_fails, read_elements


def test_pptx_slides_are_pages(tmp_path: Path) -> None:
    els, parsed = read_elements(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX)
    assert parsed.page_count == 3
    got = [(e.page, e.kind, e.text, e.heading_path) for e in els]
    assert got == [
        (1, "title", "Quarterly Review", ("Quarterly Review",)),
        (1, "paragraph", "Harbour Authority", ("Quarterly Review",)),
        (2, "heading", "Cargo volumes", ("Cargo volumes",)),
        (2, "list", "Container traffic rose by twelve percent", ("Cargo volumes",)),
        (2, "list", "Bulk cargo fell slightly", ("Cargo volumes",)),
        (2, "paragraph", "Mention the new gantry crane on the east quay.", ("Cargo volumes",)),  # speaker notes
        (3, "heading", "Berths", ("Berths",)),
        (3, "table", "Berth | Length", ("Berths",)),
        (3, "table", "North pier | 320 m", ("Berths",)),
        (3, "paragraph", "Pilots board at the buoy.", ("Berths",)),
    ]


def test_slide_limit(tmp_path: Path) -> None:
    err = parse_fails(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX, max_pages=2)
    assert err.code == ErrorCode.TOO_MANY_PAGES and "3 slides" in err.message
    els, parsed = read_elements(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX, max_pages=2, limit_mode="truncate")
    assert max(e.page for e in els) == 2 and parsed.stats["pages_truncated"] == 1
