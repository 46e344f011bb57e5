"""Every supported format, parsed from documents the tests make themselves: the text,
the element kinds, the page numbers, the limits and every kind of bad input. The
last tests send each format and each bad input through the real API and worker."""

import csv
import io
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from tests.helpers import make_pdf, run_worker, upload, wait_final
from worker.parsing import MAX_ELEMENT_CHARS, Element, Parsed, parse

ROOT = Path(__file__).resolve().parent.parent

HARBOUR = (
    "The harbour master recorded forty ships entering the northern basin during the spring tides. "
    "Each vessel was inspected for cargo manifests, crew lists and safety certificates before mooring. "
    "Storms in March delayed three ferries, and the lighthouse keeper reported unusual fog near the cliffs. "
    "A new crane arrived in April, doubling the speed at which containers could be unloaded onto the quay."
)


# --- documents made here -------------------------------------------------------------------------


def scanned_page(text: str, dpi: int = 300):
    """A Letter page of black text on white at `dpi`, as an image (what a scanner makes)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (int(8.5 * dpi), int(11 * dpi)), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(12 / 72 * dpi))  # 12 pt
    for i, line in enumerate(textwrap.wrap(text, 60)):
        draw.text((dpi, dpi + i * int(18 / 72 * dpi)), line, font=font, fill=0)
    return image


def make_scanned_pdf(pages: list[str | None], tag: str = "") -> bytes:
    """One page per item: a string is a page with a text layer, None a scanned page of HARBOUR."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="letter")
    pdf.set_title(tag)
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if text is None:
            pdf.image(scanned_page(HARBOUR), x=0, y=0, w=pdf.w, h=pdf.h)
        else:
            pdf.multi_cell(0, 14, text)
    return bytes(pdf.output())


def make_encrypted_pdf(user_password: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, f"The vault inventory lists seven brass keys. {uuid.uuid4()}")
    return bytes(pdf.output())


def make_two_column_pdf() -> bytes:
    """A title, two columns written line by line across the page (left, right, left, ...), a footer."""
    from fpdf import FPDF

    left = textwrap.wrap(
        "Alpine glaciers retreat every summer as meltwater carves channels through the ice, and "
        "the moraines left behind record the position of the ice front over many centuries of change.",
        42,
    )
    right = textwrap.wrap(
        "Coral reefs grow slowly in warm shallow seas where sunlight reaches the polyps, and their "
        "limestone skeletons build barriers that shelter lagoons from the waves of the open ocean.",
        42,
    )
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=18)
    pdf.text(15, 20, "Landscapes Shaped By Water")
    pdf.set_font("Helvetica", size=10)
    for i in range(max(len(left), len(right))):
        y = 35 + i * 5
        if i < len(left):
            pdf.text(15, y, left[i])
        if i < len(right):
            pdf.text(110, y, right[i])
    pdf.text(15, 100, "Published by the field survey office, printed on recycled paper.")
    return bytes(pdf.output())


def make_table_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    with pdf.table(col_widths=(30, 15, 30), width=75, align="LEFT") as table:
        for row in (("Name", "Age", "City"), ("Alice", "31", "Paris"), ("Bob", "45", "Oslo"), ("Chen", "27", "Lima")):
            cells = table.row()
            for value in row:
                cells.cell(value)
    return bytes(pdf.output())


def make_headings_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    for size, text in (
        (22, "Field Guide"),
        (11, "An introduction to the birds of the estuary and where to find them."),
        (16, "Waders"),
        (11, "Curlews probe the mud at low tide with their long curved bills."),
        (16, "Gulls"),
        (11, "Herring gulls nest on the rooftops of the old town."),
    ):
        pdf.set_font("Helvetica", size=size)
        pdf.multi_cell(0, size * 0.6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    return bytes(pdf.output())


def many_pages_pdf(pages: int, lines: int = 40) -> bytes:
    """A PDF of `pages` pages written by hand: every page shows the same content stream,
    so a 1,000-page file takes milliseconds to make (fpdf2 would take seconds)."""
    text = " ".join(
        f"(Line {i}: the survey vessel mapped the seabed of the fjord with multibeam sonar) '" for i in range(lines)
    )
    content = f"BT /F1 10 Tf 14 TL 72 760 Td {text} ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
        + b"] /Count %d >>" % pages,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
    page += b"/Contents 4 0 R >>"
    objects += [page] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def blank_pdf(pages: int, tag: str = "") -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(tag)  # in the metadata only: the pages stay blank
    for _ in range(pages):
        pdf.add_page()
    return bytes(pdf.output())


def make_docx(tag: str = "") -> bytes:
    import docx
    from docx.oxml import OxmlElement

    d = docx.Document()
    d.add_heading("Harbour Annual Report", level=0)
    d.add_paragraph(f"This report covers the harbour's year of operations. {tag}")
    d.add_heading("Finances", level=1)
    d.add_paragraph("Revenue from berth fees grew by nine percent in the third quarter.")
    d.add_paragraph("New tariffs for cruise ships", style="List Bullet")
    d.add_paragraph("Lower fees for fishing boats", style="List Number")
    table = d.add_table(rows=2, cols=3)
    for r, row in enumerate((("Year", "Revenue", "Profit"), ("2023", "10.4 M", "2.1 M"))):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    outlook = d.add_heading("Outlook", level=2)
    # Word records where it broke pages when it last laid the document out
    outlook.runs[0]._r.insert(0, OxmlElement("w:lastRenderedPageBreak"))
    d.add_paragraph("Dredging of the outer channel starts in spring.")
    d.add_paragraph("Figure 1: cargo volumes by month", style="Caption")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_pptx(tag: str = "") -> bytes:
    import pptx
    from pptx.util import Inches

    prs = pptx.Presentation()
    s1 = prs.slides.add_slide(prs.slide_layouts[0])
    s1.shapes.title.text = "Quarterly Review"
    s1.placeholders[1].text = f"Harbour Authority {tag}"
    s2 = prs.slides.add_slide(prs.slide_layouts[1])
    s2.shapes.title.text = "Cargo volumes"
    body = s2.placeholders[1].text_frame
    body.text = "Container traffic rose by twelve percent"
    sub = body.add_paragraph()
    sub.text = "Bulk cargo fell slightly"
    sub.level = 1
    s2.notes_slide.notes_text_frame.text = "Mention the new gantry crane on the east quay."
    s3 = prs.slides.add_slide(prs.slide_layouts[5])
    s3.shapes.title.text = "Berths"
    grid = s3.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), value in {(0, 0): "Berth", (0, 1): "Length", (1, 0): "North pier", (1, 1): "320 m"}.items():
        grid.cell(r, c).text = value
    s3.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1)).text_frame.text = "Pilots board at the buoy."
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Tides</title><style>p {{ color: red }}</style><script>var tracking = 1;</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About us</a></nav>
<div class="cookie-banner">We use cookies to improve your experience.</div>
<main><article>
<h1>Tide tables</h1>
<p>The tide <b>rises</b> twice a day.<br>Spring tides follow the full moon. {tag}</p>
<h2>Times</h2>
<ul><li>High water at 06:12</li><li>Low water at <em>12:30</em></li></ul>
<table><caption>Heights</caption><tr><th>Time</th><th>Height</th></tr>
<tr><td>06:12</td><td><p>4.2 m</p></td></tr></table>
<figure><img src="chart.png" alt=""><figcaption>Figure 1: tide curve for March</figcaption></figure>
</article></main>
<aside>Related: our sailing club</aside>
<footer>Copyright the harbour office</footer>
</body></html>"""


def zip_bomb_docx(unpacked_mb: int, tag: str = "") -> bytes:
    """A real DOCX with a part of `unpacked_mb` MB of zeros added (a few hundred KB packed)."""
    buf = io.BytesIO(make_docx(tag))
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as z, z.open("word/media/bomb.bin", "w") as f:
        chunk = bytes(1 << 20)
        for _ in range(unpacked_mb):
            f.write(chunk)
    return buf.getvalue()


def deep_html(levels: int) -> bytes:
    return ("<html><body>" + "<div>" * levels + "deep text" + "</div>" * levels + "</body></html>").encode()


# --- helpers -------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _read(tmp_path: Path, name: str, data: bytes, content_type: str, **settings) -> tuple[list[Element], Parsed]:
    parsed = parse(_write(tmp_path, name, data), content_type, Settings(**settings))
    return list(parsed.elements), parsed


def _fails(tmp_path: Path, name: str, data: bytes, content_type: str, **settings) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        _read(tmp_path, name, data, content_type, **settings)
    return info.value


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# --- recognising types ---------------------------------------------------------------------------


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


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_two_columns_are_read_column_by_column(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "cols.pdf", make_two_column_pdf(), filetypes.PDF)
    texts = [e.text for e in els]
    assert texts[0] == "Landscapes Shaped By Water" and els[0].kind == "title"
    alpine = next(t for t in texts if t.startswith("Alpine"))
    coral = next(t for t in texts if t.startswith("Coral"))
    assert alpine.endswith("over many centuries of change.") and "Coral" not in alpine
    assert coral.endswith("from the waves of the open ocean.") and "Alpine" not in coral
    assert texts.index(alpine) < texts.index(coral) < texts.index(texts[-1])
    assert texts[-1].startswith("Published by the field survey office")


def test_pdf_table_keeps_row_order(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "table.pdf", make_table_pdf(), filetypes.PDF)
    words = _words(" ".join(e.text for e in els))
    assert words == ["name", "age", "city", "alice", "31", "paris", "bob", "45", "oslo", "chen", "27", "lima"]


def test_pdf_headings_from_type_size(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "guide.pdf", make_headings_pdf(), filetypes.PDF)
    assert [(e.kind, e.text) for e in els if e.kind in ("title", "heading")] == [
        ("title", "Field Guide"),
        ("heading", "Waders"),
        ("heading", "Gulls"),
    ]
    curlews = next(e for e in els if e.text.startswith("Curlews"))
    assert curlews.kind == "paragraph" and curlews.heading_path == ("Field Guide", "Waders") and curlews.page == 1
    gulls = next(e for e in els if e.text.startswith("Herring"))
    assert gulls.heading_path == ("Field Guide", "Gulls")


def test_pdf_pages_stream_one_at_a_time(tmp_path: Path) -> None:
    parsed = parse(_write(tmp_path, "many.pdf", many_pages_pdf(50)), filetypes.PDF, Settings())
    first = next(parsed.elements)
    assert first.page == 1 and parsed.page_count == 50
    assert parsed.stats["pages_text"] == 1  # only the first page has been read so far
    rest = list(parsed.elements)
    assert rest[-1].page == 50 and parsed.stats["pages_text"] == 50


def test_scanned_page_is_ocrd_and_keeps_its_page_number(tmp_path: Path) -> None:
    els, parsed = _read(tmp_path, "mixed.pdf", make_scanned_pdf(["A page with a text layer.", None]), filetypes.PDF)
    assert els[0] == Element("A page with a text layer.", "paragraph", 1)
    ocr_text = " ".join(e.text for e in els if e.page == 2)
    expected = _words(HARBOUR)
    found = set(_words(ocr_text))
    recall = sum(w in found for w in expected) / len(expected)
    assert recall >= 0.95, (recall, ocr_text)
    assert parsed.stats == {"pages_text": 1, "pages_ocr": 1, "pages_blank": 0, "pages_ocr_skipped": 0} | {
        "characters": sum(len(e.text) for e in els)
    }


def test_ocr_off_skips_and_counts_scanned_pages(tmp_path: Path) -> None:
    data = make_scanned_pdf(["Only this page has a text layer.", None])
    els, parsed = _read(tmp_path, "mixed.pdf", data, filetypes.PDF, ocr_enabled=False)
    assert [(e.text, e.page) for e in els] == [("Only this page has a text layer.", 1)]
    assert parsed.stats["pages_ocr_skipped"] == 1 and parsed.stats["pages_ocr"] == 0
    err = _fails(tmp_path, "scan.pdf", make_scanned_pdf([None]), filetypes.PDF, ocr_enabled=False)
    assert err.code == ErrorCode.OCR_DISABLED and "OCR is turned off" in err.message


def test_too_many_ocr_pages_fails_before_any_ocr_or_truncates(tmp_path: Path) -> None:
    data = make_scanned_pdf(["Text layer page.", None, None])
    err = _fails(tmp_path, "scans.pdf", data, filetypes.PDF, max_ocr_pages=1)
    assert err.code == ErrorCode.TOO_MANY_OCR_PAGES
    # truncate: the first scanned page is read, the second skipped and counted
    els, parsed = _read(tmp_path, "scans.pdf", data, filetypes.PDF, max_ocr_pages=1, limit_mode="truncate")
    assert {e.page for e in els} == {1, 2}
    assert parsed.stats["pages_ocr"] == 1 and parsed.stats["ocr_pages_truncated"] == 1
    assert parsed.stats["truncated"] == 1


def test_page_limit_fails_or_truncates(tmp_path: Path) -> None:
    data = many_pages_pdf(5, lines=3)
    err = _fails(tmp_path, "five.pdf", data, filetypes.PDF, max_pages=3)
    assert err.code == ErrorCode.TOO_MANY_PAGES and "5 pages" in err.message
    els, parsed = _read(tmp_path, "five.pdf", data, filetypes.PDF, max_pages=3, limit_mode="truncate")
    assert {e.page for e in els} == {1, 2, 3} and parsed.page_count == 5
    assert parsed.stats["pages_truncated"] == 2 and parsed.stats["truncated"] == 1


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (make_pdf(["One page of text.", "Two pages."])[:900], ErrorCode.PDF_CORRUPT),  # truncated
        (b"", ErrorCode.PDF_CORRUPT),
        (make_encrypted_pdf("user-secret"), ErrorCode.PDF_ENCRYPTED),
        (make_pdf(["", "", ""]), ErrorCode.NO_TEXT),  # every page blank
    ],
    ids=["truncated", "zero-bytes", "encrypted", "blank-pages"],
)
def test_bad_pdfs_fail_with_their_code(tmp_path: Path, data: bytes, code: ErrorCode) -> None:
    err = _fails(tmp_path, "bad.pdf", data, filetypes.PDF)
    assert err.code == code and err.message
    if code == ErrorCode.NO_TEXT:
        assert "All 3 pages" in err.message


def test_pdf_with_an_empty_user_password_opens(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "owner-only.pdf", make_encrypted_pdf(""), filetypes.PDF)
    assert els[0].text.startswith("The vault inventory lists seven brass keys.")


# --- DOCX, PPTX ----------------------------------------------------------------------------------


def test_docx_headings_lists_tables_and_pages(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "report.docx", make_docx(), filetypes.DOCX)
    title = ("Harbour Annual Report",)
    finances, outlook = (*title, "Finances"), (*title, "Finances", "Outlook")
    assert els == [
        Element("Harbour Annual Report", "title", 1, title),
        Element("This report covers the harbour's year of operations.", "paragraph", 1, title),
        Element("Finances", "heading", 1, finances),
        Element("Revenue from berth fees grew by nine percent in the third quarter.", "paragraph", 1, finances),
        Element("New tariffs for cruise ships", "list", 1, finances),
        Element("Lower fees for fishing boats", "list", 1, finances),
        Element("Year | Revenue | Profit", "table", 1, finances),
        Element("2023 | 10.4 M | 2.1 M", "table", 1, finances),
        Element("Outlook", "heading", 2, outlook),  # after Word's page break
        Element("Dredging of the outer channel starts in spring.", "paragraph", 2, outlook),
        Element("Figure 1: cargo volumes by month", "caption", 2, outlook),
    ]


def test_docx_tracked_changes_fields_and_text_boxes(tmp_path: Path) -> None:
    import docx
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    d = docx.Document()
    p = d.add_paragraph("The berth is ")
    for xml in (
        f'<w:ins {w} w:id="1" w:author="a"><w:r><w:t xml:space="preserve">three hundred </w:t></w:r></w:ins>',
        f'<w:del {w} w:id="2" w:author="a"><w:r><w:delText>two hundred </w:delText></w:r></w:del>',
        f'<w:fldSimple {w} w:instr="DOCPROPERTY unit"><w:r><w:t>metres</w:t></w:r></w:fldSimple>',
        f"<w:r {w}><w:t> long.</w:t></w:r>",
    ):
        p._p.append(parse_xml(xml))
    box = d.add_paragraph("Main text.")._p
    box.append(
        parse_xml(
            f'<w:r {w} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
            '<mc:AlternateContent><mc:Choice Requires="wps"><w:txbxContent><w:p><w:r><w:t>In a box.</w:t></w:r>'
            "</w:p></w:txbxContent></mc:Choice><mc:Fallback><w:txbxContent><w:p><w:r><w:t>In a box.</w:t></w:r>"
            "</w:p></w:txbxContent></mc:Fallback></mc:AlternateContent></w:r>"
        )
    )
    buf = io.BytesIO()
    d.save(buf)
    els, _ = _read(tmp_path, "changes.docx", buf.getvalue(), filetypes.DOCX)
    assert [e.text for e in els] == ["The berth is three hundred metres long.", "Main text.", "In a box."]


def test_docx_never_laid_out_by_word_has_no_page_numbers(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph("A memo written by a script.")
    buf = io.BytesIO()
    d.save(buf)
    els, _ = _read(tmp_path, "memo.docx", buf.getvalue(), filetypes.DOCX)
    assert els == [Element("A memo written by a script.", "paragraph", None, ())]


def test_pptx_slides_are_pages(tmp_path: Path) -> None:
    els, parsed = _read(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX)
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
    err = _fails(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX, max_pages=2)
    assert err.code == ErrorCode.TOO_MANY_PAGES and "3 slides" in err.message
    els, parsed = _read(tmp_path, "deck.pptx", make_pptx(), filetypes.PPTX, max_pages=2, limit_mode="truncate")
    assert max(e.page for e in els) == 2 and parsed.stats["pages_truncated"] == 1


def test_zip_bomb_docx_fails_before_it_is_unpacked(tmp_path: Path) -> None:
    bomb = zip_bomb_docx(20)
    assert len(bomb) < 100_000
    err = _fails(tmp_path, "bomb.docx", bomb, filetypes.DOCX, max_decompressed_bytes=10 * 1024 * 1024)
    assert err.code == ErrorCode.ARCHIVE_TOO_LARGE and "zip bomb" in err.message
    # under the limit the same file is read
    els, _ = _read(tmp_path, "bomb.docx", bomb, filetypes.DOCX, max_decompressed_bytes=64 * 1024 * 1024)
    assert els[0].text == "Harbour Annual Report"


def test_zip_entry_that_unpacks_beyond_its_declared_size_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(make_docx())
    # the central directory understates what word/document.xml unpacks to: reading stops there, the CRC fails
    name = data.find(b"word/document.xml", data.find(b"PK\x01\x02"))
    entry = data.rfind(b"PK\x01\x02", 0, name)
    assert name == entry + 46
    data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
    err = _fails(tmp_path, "liar.docx", bytes(data), filetypes.DOCX)
    assert err.code == ErrorCode.DOCUMENT_CORRUPT


@pytest.mark.parametrize("content_type", [filetypes.DOCX, filetypes.PPTX])
def test_broken_office_files_fail_document_corrupt(tmp_path: Path, content_type: str) -> None:
    good, other = (make_docx(), make_pptx()) if content_type == filetypes.DOCX else (make_pptx(), make_docx())
    for data in (good[: len(good) // 2], b"PK\x03\x04 not really a zip", other):
        err = _fails(tmp_path, "broken", data, content_type)
        assert err.code == ErrorCode.DOCUMENT_CORRUPT, err


# --- HTML, CSV, text -----------------------------------------------------------------------------


def test_html_keeps_content_and_drops_page_furniture(tmp_path: Path) -> None:
    els, _ = _read(tmp_path, "tides.html", HTML_PAGE.format(tag="").encode(), filetypes.HTML)
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
    els, _ = _read(tmp_path, "order.html", page, filetypes.HTML)
    assert [(e.text, e.kind) for e in els] == [
        ("Before the list", "paragraph"),
        ("one", "list"),
        ("after the list in bold", "paragraph"),
        ("Last", "paragraph"),
    ]


def test_html_encoding_from_meta_charset(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>Café crème, déjà vu</p></body></html>'
    els, _ = _read(tmp_path, "fr.html", page.encode("cp1252"), filetypes.HTML)
    assert [e.text for e in els] == ["Café crème, déjà vu"]


@pytest.mark.parametrize(
    "wrapper",
    ['<div class="sidebar-layout">', "<aside>", '<form id="aspnetForm" action="/">'],
    ids=["class-name", "aside", "form"],
)
def test_html_page_inside_one_furniture_element_is_read_after_all(tmp_path: Path, wrapper: str) -> None:
    close = "</" + wrapper[1:].split()[0].rstrip(">") + ">"
    page = f"<html><body>{wrapper}<p>The whole page sits in one wrapper.</p>{close}</body></html>"
    els, _ = _read(tmp_path, "wrapped.html", page.encode(), filetypes.HTML)
    assert [e.text for e in els] == ["The whole page sits in one wrapper."]


def test_html_nested_too_deep_fails(tmp_path: Path) -> None:
    err = _fails(tmp_path, "deep.html", deep_html(10_000), filetypes.HTML)
    assert err.code == ErrorCode.HTML_TOO_DEEP and "256 levels" in err.message
    els, _ = _read(tmp_path, "ok.html", deep_html(200), filetypes.HTML)
    assert [e.text for e in els] == ["deep text"]


def test_csv_rows_in_any_encoding_and_delimiter(tmp_path: Path) -> None:
    data = "Stadt;Einwohner\nMünchen;1 500 000\n\nKöln;1 080 000\n".encode("cp1252")
    els, _ = _read(tmp_path, "cities.csv", data, filetypes.CSV)
    assert els == [
        Element("Stadt | Einwohner", "table"),
        Element("München | 1 500 000", "table"),
        Element("Köln | 1 080 000", "table"),
    ]
    els, _ = _read(tmp_path, "t.tsv", b'a\tb\n"quoted, with comma"\t2\n', filetypes.CSV)
    assert [e.text for e in els] == ["a | b", "quoted, with comma | 2"]
    els, _ = _read(tmp_path, "spaced.csv", b'a, "b, c", d\n1, "2, 3", 4\n', filetypes.CSV)
    assert [e.text for e in els] == ["a | b, c | d", "1 | 2, 3 | 4"]  # a space before the quote


# Quotes and delimiters that make csv.Sniffer's regexes backtrack: about 4 s of CPU for these
# 30 KB (10 s for the 64 KB it was given before), holding the GIL the worker's heartbeat needs.
SNIFFER_TRAP = '"a,' * 10_000


def test_csv_dialect_detection_is_fast_on_input_that_stalls_the_sniffer() -> None:
    from worker.parsing.csv import _dialect

    start = time.process_time()
    _dialect(SNIFFER_TRAP)
    assert time.process_time() - start < 0.5


def test_csv_file_that_stalls_the_sniffer_parses_fast(tmp_path: Path) -> None:
    start = time.process_time()
    els, _ = _read(tmp_path, "trap.csv", f"name,note\n{SNIFFER_TRAP}\n".encode(), filetypes.CSV)
    assert time.process_time() - start < 1.0
    assert els[0].text == "name | note"  # then the long row, in pieces of MAX_ELEMENT_CHARS
    assert len(els) > 1 and {e.kind for e in els} == {"table"} and set(els[1].text) == set("a,| ")


# each note holds the other delimiters, often more of them than the file's own, and line breaks
CSV_ROWS = [
    ["name", "note", "amount"],
    ["Ames", "one, two, three; four; five\tsix\tseven | eight | nine", "1"],
    ["Bo", "first line,,,\nsecond line;;;\t\t|||", "2"],
    ["Cy", "plain", "3"],
    ["Di", ",;\t|", "4"],
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_delimiter_found_when_quoted_fields_hold_the_others(tmp_path: Path, delimiter: str) -> None:
    from worker.parsing.csv import _dialect

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_NONNUMERIC).writerows(CSV_ROWS)
    assert _dialect(out.getvalue()).delimiter == delimiter
    els, _ = _read(tmp_path, "notes.csv", out.getvalue().encode(), filetypes.CSV)
    assert [e.text for e in els] == [" | ".join(" ".join(cell.split()) for cell in row) for row in CSV_ROWS]


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("id;price\n1;2,50\n2;3,75\n3;10\n", ";"),  # decimal commas in some rows
        ("a|b|c\n1|2|3\n", "|"),
        ("a\tb\n1\t2, or so\n", "\t"),
        ('a,b\n1,2\n3,"4; 5; 6"\n', ","),
        ('a, "b, c", d\n1, "2, 3", 4\n', ","),  # a space before the quote
        ("one column\nno delimiter at all\n", ","),  # nothing consistent: comma, as csv.excel
        ("one column\twith a tab\nand none\nhere\n", "\t"),  # more tabs than commas: tab
    ],
)
def test_csv_delimiter_by_consistent_counts_outside_quotes(sample: str, delimiter: str) -> None:
    from worker.parsing.csv import _dialect

    assert _dialect(sample).delimiter == delimiter


def test_single_line_50_mb_text_fails_or_truncates_fast(tmp_path: Path) -> None:
    data = b"tide " * (10 * 1024 * 1024)  # 50 MB, no line break
    err = _fails(tmp_path, "one-line.txt", data, filetypes.TEXT)
    assert err.code == ErrorCode.TOO_MANY_CHARACTERS and "10,000,000" in err.message
    parsed = parse(_write(tmp_path, "one-line.txt", data), filetypes.TEXT, Settings(limit_mode="truncate"))
    sizes = [len(e.text) for e in parsed.elements]
    assert max(sizes) <= MAX_ELEMENT_CHARS and sum(sizes) <= 10_000_000
    assert parsed.stats["characters"] == sum(sizes) > 9_900_000 and parsed.stats["characters_truncated"] == 1


def test_binary_garbage_named_txt_fails_text_undecodable(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    no_nul = bytes(rng.randrange(128, 256) for _ in range(20_000))  # passes the upload's binary check
    err = _fails(tmp_path, "garbage.txt", no_nul, filetypes.TEXT)
    assert err.code == ErrorCode.TEXT_UNDECODABLE
    # valid UTF-8, but control characters throughout: binary data, not text
    err = _fails(tmp_path, "controls.txt", bytes(rng.randrange(0, 32) for _ in range(20_000)), filetypes.TEXT)
    assert err.code == ErrorCode.TEXT_UNDECODABLE


def test_peak_memory_stays_flat_from_100_to_1000_pages(tmp_path: Path) -> None:
    """Parse and chunk with the model's tokenizer, in a fresh process: peak RSS must not grow
    with the page count, and stays far under the worker's 600 MB budget. (VmHWM, not ru_maxrss:
    Linux carries the parent's peak over into a child's ru_maxrss.)"""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from app.embedding.embedder import load_tokenizer, model_dir
        from app.settings import Settings
        from worker.chunking import Chunker
        from worker.parsing import parse
        settings = Settings()
        chunker = Chunker(load_tokenizer(model_dir(settings)))
        parsed = parse(Path(sys.argv[1]), "application/pdf", settings)
        chunks = chunker.chunk(parsed.elements)
        peak_kb = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
        print(len(chunks), parsed.stats["pages_text"], peak_kb // 1024)
        """
    )
    peaks = {}
    for pages in (100, 1000):
        path = _write(tmp_path, f"p{pages}.pdf", many_pages_pdf(pages))
        out = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert out.returncode == 0, out.stderr
        chunks, read, peaks[pages] = map(int, out.stdout.split())
        assert read == pages and chunks >= pages
    assert peaks[1000] < 600 and peaks[1000] - peaks[100] < 40, peaks


# --- through the API and the worker --------------------------------------------------------------


def test_every_format_is_embedded_end_to_end(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex  # every file unique: the service may deduplicate identical uploads
    files = {
        "report.docx": make_docx(tag),
        "deck.pptx": make_pptx(tag),
        "tides.html": HTML_PAGE.format(tag=tag).encode(),
        "berths.csv": f"berth,length\nNorth pier,320 m\nSouth pier,{tag}\n".encode(),
        "scan.pdf": make_scanned_pdf([f"Cover page {tag}", None]),
    }
    r = upload(client, *files.items())
    assert r.status_code == 202, r.text
    sent = {f["filename"]: f for f in r.json()["files"]}
    assert {name: f["content_type"] for name, f in sent.items()} == {
        "report.docx": filetypes.DOCX,
        "deck.pptx": filetypes.PPTX,
        "tides.html": filetypes.HTML,
        "berths.csv": filetypes.CSV,
        "scan.pdf": filetypes.PDF,
    }
    run_worker()
    docs = wait_final(client, [f["file_id"] for f in sent.values()])
    for name, f in sent.items():
        doc = docs[f["file_id"]]
        assert doc["status"] == "embedded", (name, doc)
        assert doc["chunk_count"] >= 1
    assert docs[sent["deck.pptx"]["file_id"]]["page_count"] == 3

    hit = client.post("/query", json={"query": "gantry crane on the east quay", "k": 1}).json()["results"][0]
    assert hit["filename"] == "deck.pptx" and hit["page_start"] == 2 and hit["heading_path"] == ["Cargo volumes"]
    hit = client.post("/query", json={"query": "lighthouse keeper reported fog near the cliffs", "k": 1}).json()
    assert hit["results"][0]["filename"] == "scan.pdf" and hit["results"][0]["page_end"] == 2  # the scanned page
    hit = client.post("/query", json={"query": "berth fee revenue growth", "k": 1}).json()["results"][0]
    assert hit["filename"] == "report.docx" and hit["heading_path"] == ["Harbour Annual Report", "Finances"]


def test_bad_inputs_fail_with_their_code_end_to_end(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    cases = {
        "truncated.pdf": (make_pdf([f"A report that was cut short {tag}.", "More."])[:900], "pdf_corrupt"),
        "locked.pdf": (make_encrypted_pdf("user-secret"), "pdf_encrypted"),
        "bomb.docx": (zip_bomb_docx(300, tag), "archive_too_large"),
        "deep.html": (deep_html(10_000) + tag.encode(), "html_too_deep"),
        "blank.pdf": (blank_pdf(4, tag), "no_text"),
    }
    ids = {}
    for name, (data, _) in cases.items():
        r = upload(client, (name, data))
        assert r.status_code == 202, (name, r.text)
        ids[name] = r.json()["files"][0]["file_id"]
    run_worker()
    docs = wait_final(client, list(ids.values()))
    for name, (_, code) in cases.items():
        doc = docs[ids[name]]
        assert doc["status"] == "failed" and doc["error"]["code"] == code, (name, doc)
        assert doc["error"]["message"] and not doc["chunk_count"]


def test_limits_set_by_config_fail_end_to_end(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker with OCR off and a limit of 200,000 characters (uploads stop at 2 MB in the tests)."""
    from app.settings import get_settings

    tag = uuid.uuid4().hex
    cases = {
        "scan-only.pdf": (make_scanned_pdf([None, None], tag), "ocr_disabled"),
        "one-line.txt": (f"{tag} ".encode() + b"tide " * 300_000, "too_many_characters"),
    }
    ids = {}
    for name, (data, _) in cases.items():
        r = upload(client, (name, data))
        assert r.status_code == 202, (name, r.text)
        ids[name] = r.json()["files"][0]["file_id"]
    with monkeypatch.context() as env:
        env.setenv("OCR_ENABLED", "false")
        env.setenv("MAX_CHARACTERS", "200000")
        get_settings.cache_clear()
        try:
            run_worker()
        finally:
            env.undo()
            get_settings.cache_clear()
    docs = wait_final(client, list(ids.values()))
    for name, (_, code) in cases.items():
        doc = docs[ids[name]]
        assert doc["status"] == "failed" and doc["error"]["code"] == code, (name, doc)


def test_bad_inputs_refused_at_upload(client: httpx.Client) -> None:
    r = upload(client, ("garbage.txt", os.urandom(4096)))
    assert r.status_code == 415 and r.json()["detail"]["code"] == "unsupported_type"
    message = r.json()["detail"]["message"]
    assert filetypes.DOCX in message and filetypes.PPTX in message and filetypes.HTML in message
    r = upload(client, ("empty.docx", b""))
    assert r.status_code == 422 and r.json()["detail"]["code"] == "empty_file"


def test_content_type_mismatch_refused_at_upload(client: httpx.Client) -> None:
    r = upload(client, ("report.pdf", make_docx(uuid.uuid4().hex)))
    assert r.status_code == 415, r.text
    assert r.json()["detail"]["code"] == "content_type_mismatch"
    assert "report.pdf" in r.json()["detail"]["message"]
