"""Recognising a type by content first, and refusing a name or declared type the content contradicts."""

import io
import zipfile

import pytest

from app.intake import filetypes
from app.status import ErrorCode
from tests.fixtures.documents import HTML_PAGE, make_docx, make_pptx


def test_sniff_by_content_then_name() -> None:
    assert filetypes.sniff(b"%PDF-1.7 ...", "report.pdf") == filetypes.PDF
    assert filetypes.sniff(b"%PDF-1.7 ...", "report") == filetypes.PDF  # no name needed
    with pytest.raises(filetypes.ContentTypeMismatch):  # content and name disagree
        filetypes.sniff(b"%PDF-1.7 ...", "report.txt")
    assert filetypes.sniff(b"# Title", "notes.md") == filetypes.MARKDOWN
    assert filetypes.sniff(b"hello", "notes.txt") == filetypes.TEXT
    assert filetypes.sniff(b"\x89PNG\r\n\x1a\n\x00\x00", "image.png") is None
    assert filetypes.sniff(b"MZ\x90\x00\x03", "setup.txt") is None  # binary named .txt
    assert filetypes.sniff(b"<html>", "page.html") == filetypes.HTML
    assert filetypes.sniff(b"hello", "notes.json") is None  # text, but not a type we parse


def test_sniff_office_html_and_text_by_content() -> None:
    docx, pptx = make_docx(), make_pptx()
    head = filetypes.SNIFF_BYTES
    assert filetypes.sniff(docx[:head], "report.docx") == filetypes.DOCX
    assert filetypes.sniff(pptx[:head], "deck.pptx") == filetypes.PPTX
    assert filetypes.sniff(docx[:head], "report") == filetypes.DOCX  # no name needed
    assert filetypes.sniff(docx[:head], "report.zip") == filetypes.DOCX  # a name we do not know claims nothing
    xlsx = io.BytesIO()
    with zipfile.ZipFile(xlsx, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    expected = filetypes.XLSX if filetypes.XLSX in filetypes.OPTIONAL else None  # with the unstructured extra
    assert filetypes.sniff(xlsx.getvalue(), "sheet.xlsx") == expected
    assert filetypes.sniff(b"PK\x03\x04" + b"\x00" * 60, "archive.zip") is None
    page = HTML_PAGE.encode()
    assert filetypes.sniff(page, "page.html") == filetypes.HTML
    assert filetypes.sniff(page, "saved-page.txt") == filetypes.HTML  # markup decides among text types
    assert filetypes.sniff(b"\xef\xbb\xbf<!-- saved -->\n<html><body>x</body></html>", "page") == filetypes.HTML
    assert filetypes.sniff(b"<p>just a fragment</p>", "notes.txt") == filetypes.TEXT
    assert filetypes.sniff(b"a;b\n1;2\n", "data.csv") == filetypes.CSV
    assert filetypes.sniff(b"log line mentioning %PDF-1.4 headers", "app.log") == filetypes.TEXT
    assert filetypes.sniff(b"\x00\x01\x02\x03garbage\xff" * 100, "notes.txt") is None
    assert filetypes.sniff(b"\x1b[31mred\x1b[0m log line\n", "build.log") == filetypes.TEXT  # ANSI colours are text
    assert filetypes.sniff("hé".encode("utf-16"), "utf16.txt") == filetypes.TEXT


@pytest.mark.parametrize(
    ("head", "name", "declared", "detected", "claimed"),
    [
        (b"%PDF-1.7\n...", "report.txt", None, filetypes.PDF, filetypes.TEXT),
        (b"%PDF-1.7\n...", "report.docx", None, filetypes.PDF, filetypes.DOCX),
        (b"%PDF-1.7\n...", "report", "text/html", filetypes.PDF, filetypes.HTML),
        (b"plain words", "notes.pdf", None, filetypes.TEXT, filetypes.PDF),
        (b"plain words", "notes.txt", "application/pdf", filetypes.TEXT, filetypes.PDF),
        ("docx", "report.pdf", None, filetypes.DOCX, filetypes.PDF),
        ("docx", "report.pptx", None, filetypes.DOCX, filetypes.PPTX),
        ("pptx", "deck.pptx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document; x=y",
         filetypes.PPTX, filetypes.DOCX),
    ],
)  # fmt: skip
def test_content_that_contradicts_its_name_or_declared_type_is_refused(head, name, declared, detected, claimed) -> None:
    head = {"docx": make_docx, "pptx": make_pptx}[head]() if isinstance(head, str) else head
    with pytest.raises(filetypes.ContentTypeMismatch) as info:
        filetypes.sniff(head[: filetypes.SNIFF_BYTES], name, declared)
    assert (info.value.detected, info.value.claimed) == (detected, claimed)
    assert info.value.code == ErrorCode.CONTENT_TYPE_MISMATCH
    assert name in info.value.message and "declared as" in info.value.message


def test_generic_or_compatible_declared_types_are_no_contradiction() -> None:
    pdf = b"%PDF-1.7\n..."
    assert filetypes.sniff(pdf, "report.pdf", "application/octet-stream") == filetypes.PDF
    assert filetypes.sniff(pdf, "report.pdf", "application/pdf") == filetypes.PDF
    assert filetypes.sniff(pdf, "report.pdf", "") == filetypes.PDF
    assert filetypes.sniff(pdf, "report.bin", "image/png") == filetypes.PDF  # types we do not know claim nothing
    assert filetypes.sniff(make_docx()[:8192], "r.docx", "application/zip") == filetypes.DOCX
    assert filetypes.sniff(b"# Title", "notes.md", "text/plain") == filetypes.MARKDOWN
    assert filetypes.sniff(b"a,b\n", "data.csv", "text/plain; charset=utf-8") == filetypes.CSV
