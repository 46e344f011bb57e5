"""Scanned pages: OCR'd with their page numbers, skipped and counted with OCR off, and the OCR page limit."""

from pathlib import Path

from app.intake import filetypes
from app.status import ErrorCode
from tests.fixtures.documents import HARBOUR, make_scanned_pdf
from tests.fixtures.parsing import parse_fails, read_elements, words_of
from worker.parsing import Element


def test_scanned_page_is_ocrd_and_keeps_its_page_number(tmp_path: Path) -> None:
    els, parsed = read_elements(
        tmp_path, "mixed.pdf", make_scanned_pdf(["A page with a text layer.", None]), filetypes.PDF
    )
    assert els[0] == Element("A page with a text layer.", "paragraph", 1)
    ocr_text = " ".join(e.text for e in els if e.page == 2)
    expected = words_of(HARBOUR)
    found = set(words_of(ocr_text))
    recall = sum(w in found for w in expected) / len(expected)
    assert recall >= 0.95, (recall, ocr_text)
    assert parsed.stats == {"pages_text": 1, "pages_ocr": 1, "pages_blank": 0, "pages_ocr_skipped": 0} | {
        "characters": sum(len(e.text) for e in els)
    }


def test_ocr_off_skips_and_counts_scanned_pages(tmp_path: Path) -> None:
    data = make_scanned_pdf(["Only this page has a text layer.", None])
    els, parsed = read_elements(tmp_path, "mixed.pdf", data, filetypes.PDF, ocr_enabled=False)
    assert [(e.text, e.page) for e in els] == [("Only this page has a text layer.", 1)]
    assert parsed.stats["pages_ocr_skipped"] == 1 and parsed.stats["pages_ocr"] == 0
    err = parse_fails(tmp_path, "scan.pdf", make_scanned_pdf([None]), filetypes.PDF, ocr_enabled=False)
    assert err.code == ErrorCode.OCR_DISABLED and "OCR is turned off" in err.message


def test_too_many_ocr_pages_fails_before_any_ocr_or_truncates(tmp_path: Path) -> None:
    data = make_scanned_pdf(["Text layer page.", None, None])
    err = parse_fails(tmp_path, "scans.pdf", data, filetypes.PDF, max_ocr_pages=1)
    assert err.code == ErrorCode.TOO_MANY_OCR_PAGES
    # truncate: the first scanned page is read, the second skipped and counted
    els, parsed = read_elements(tmp_path, "scans.pdf", data, filetypes.PDF, max_ocr_pages=1, limit_mode="truncate")
    assert {e.page for e in els} == {1, 2}
    assert parsed.stats["pages_ocr"] == 1 and parsed.stats["ocr_pages_truncated"] == 1
    assert parsed.stats["truncated"] == 1
