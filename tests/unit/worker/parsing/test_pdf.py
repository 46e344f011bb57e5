"""PDF: pages and their numbers, reading order (columns, tables, headings by type size), pages read
one at a time, page limits, broken and encrypted files, and flat peak memory up to 1,000 pages."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from tests.fixtures import ROOT
from tests.fixtures.documents import make_encrypted_pdf, make_pdf
from tests.fixtures.parsing import parse_fails, read_elements, words_of, write_file
from worker.parsing import parse


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


def test_pdf_pages_keep_their_numbers(tmp_path: Path) -> None:
    path = write_file(tmp_path, "a.pdf", make_pdf(["First page text.", "Second page text.", ""]))
    parsed = parse(path, filetypes.PDF)
    assert parsed.page_count == 3
    els = list(parsed.elements)
    assert [(e.text, e.page) for e in els] == [("First page text.", 1), ("Second page text.", 2)]


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"%PDF-1.4\ngarbage", ErrorCode.PDF_CORRUPT), (b"%PDF-1.7\n" + b"\x00" * 64, ErrorCode.PDF_CORRUPT)],
)
def test_bad_pdfs_raise_their_code(tmp_path: Path, data: bytes, code: ErrorCode) -> None:
    with pytest.raises(PipelineError) as info:
        list(parse(write_file(tmp_path, "bad.pdf", data), filetypes.PDF).elements)
    assert info.value.code == code


def test_pdf_two_columns_are_read_column_by_column(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "cols.pdf", make_two_column_pdf(), filetypes.PDF)
    texts = [e.text for e in els]
    assert texts[0] == "Landscapes Shaped By Water" and els[0].kind == "title"
    alpine = next(t for t in texts if t.startswith("Alpine"))
    coral = next(t for t in texts if t.startswith("Coral"))
    assert alpine.endswith("over many centuries of change.") and "Coral" not in alpine
    assert coral.endswith("from the waves of the open ocean.") and "Alpine" not in coral
    assert texts.index(alpine) < texts.index(coral) < texts.index(texts[-1])
    assert texts[-1].startswith("Published by the field survey office")


def test_pdf_table_keeps_row_order(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "table.pdf", make_table_pdf(), filetypes.PDF)
    words = words_of(" ".join(e.text for e in els))
    assert words == ["name", "age", "city", "alice", "31", "paris", "bob", "45", "oslo", "chen", "27", "lima"]


def test_pdf_headings_from_type_size(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "guide.pdf", make_headings_pdf(), filetypes.PDF)
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
    parsed = parse(write_file(tmp_path, "many.pdf", many_pages_pdf(50)), filetypes.PDF, Settings())
    first = next(parsed.elements)
    assert first.page == 1 and parsed.page_count == 50
    assert parsed.stats["pages_text"] == 1  # only the first page has been read so far
    rest = list(parsed.elements)
    assert rest[-1].page == 50 and parsed.stats["pages_text"] == 50


def test_page_limit_fails_or_truncates(tmp_path: Path) -> None:
    data = many_pages_pdf(5, lines=3)
    err = parse_fails(tmp_path, "five.pdf", data, filetypes.PDF, max_pages=3)
    assert err.code == ErrorCode.TOO_MANY_PAGES and "5 pages" in err.message
    els, parsed = read_elements(tmp_path, "five.pdf", data, filetypes.PDF, max_pages=3, limit_mode="truncate")
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
    err = parse_fails(tmp_path, "bad.pdf", data, filetypes.PDF)
    assert err.code == code and err.message
    if code == ErrorCode.NO_TEXT:
        assert "All 3 pages" in err.message


def test_pdf_with_an_empty_user_password_opens(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "owner-only.pdf", make_encrypted_pdf(""), filetypes.PDF)
    assert els[0].text.startswith("The vault inventory lists seven brass keys.")


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
        path = write_file(tmp_path, f"p{pages}.pdf", many_pages_pdf(pages))
        out = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert out.returncode == 0, out.stderr
        chunks, read, peaks[pages] = map(int, out.stdout.split())
        assert read == pages and chunks >= pages
    assert peaks[1000] < 600 and peaks[1000] - peaks[100] < 40, peaks
