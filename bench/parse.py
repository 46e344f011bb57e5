"""Parsing throughput on this machine: pages per second per format, OCR seconds per page,
and the peak memory of a 1,000-page PDF. Appends the results to BENCHMARKS.md.

    .venv/bin/python -m bench.parse            # about two minutes on 2 cores
    .venv/bin/python -m bench.parse --no-embed # skip the 1,000-page end-to-end memory run
    .venv/bin/python -m bench.parse --unstructured-only  # only the section below

Documents are generated here (seeded, so every run reads the same text). Formats without
pages count one page per 3,000 characters of text, about a printed page. Times are for
parsing alone (elements out, no chunking), the best of three runs.

With the unstructured extra installed (requirements-unstructured.txt), a second section times
the long-tail formats it reads (EML, EPUB, ODT, RTF, XLSX; made with pandoc and openpyxl from
the same pages), and our PDF parser next to unstructured's `fast` PDF strategy on the same PDF.
unstructured's `partition_pdf` cannot be imported with the extra alone: even `fast` needs
unstructured-inference, OpenCV and pikepdf at import (the `pdf` extra, which brings torch's
models). For the comparison only, layer them over the app's venv in a scratch one:

    python3 -m venv /tmp/bench-pdf
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/bench-pdf/lib/python3.11/site-packages/app.pth
    /tmp/bench-pdf/bin/pip install -c requirements.txt -c requirements-unstructured.txt \
        unstructured-inference pi-heif pikepdf pdfminer.six
    /tmp/bench-pdf/bin/python -m bench.parse --unstructured-only
"""

import argparse
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from app.intake import filetypes
from app.settings import Settings
from worker.parsing import parse

ROOT = Path(__file__).resolve().parent.parent
PAGE_CHARS = 3000
PAGES = 200
OCR_PAGES = 4
WORDS = [
    *("harbour", "tide", "vessel", "cargo", "crane", "quay", "pier", "berth", "ferry", "lighthouse", "channel"),
    *("dredging", "basin", "storm", "fog", "manifest", "crew", "inspection", "container", "bulk", "tariff"),
    *("pilot", "buoy", "anchor", "hull", "keel", "deck", "mast", "sail", "rope", "survey", "seabed", "sonar"),
    *("depth", "salinity", "current", "wave", "reef", "lagoon", "estuary", "delta", "marsh", "cliff", "dune"),
]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, chars: int = 600) -> str:
    out = ""
    while len(out) < chars:
        out += sentence(rng) + " "
    return out.strip()


def page_texts(rng: random.Random) -> list[tuple[str, list[str]]]:
    """PAGES pages of (heading, paragraphs) of about PAGE_CHARS characters."""
    return [(f"Section {n}: {rng.choice(WORDS)}", [paragraph(rng) for _ in range(5)]) for n in range(1, PAGES + 1)]


def make_pdf(pages: list[tuple[str, list[str]]]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    for heading, paras in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=16)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for para in paras:
            pdf.multi_cell(0, 5, para, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    return bytes(pdf.output())


def make_scanned_pdf(rng: random.Random, pages: int) -> bytes:
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    pdf = FPDF(unit="pt", format="letter")
    dpi = 300
    font = ImageFont.load_default(size=int(11 / 72 * dpi))
    for _ in range(pages):
        image = Image.new("L", (int(8.5 * dpi), int(11 * dpi)), 255)
        draw = ImageDraw.Draw(image)
        lines = textwrap.wrap(" ".join(paragraph(rng) for _ in range(5)), 80)
        for i, line in enumerate(lines[:45]):
            draw.text((dpi, dpi + i * int(15 / 72 * dpi)), line, font=font, fill=0)
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=pdf.w, h=pdf.h)
    return bytes(pdf.output())


def make_docx(pages: list[tuple[str, list[str]]]) -> bytes:
    import docx

    d = docx.Document()
    for heading, paras in pages:
        d.add_heading(heading, level=1)
        for para in paras[:-1]:
            d.add_paragraph(para)
        table = d.add_table(rows=3, cols=3)
        for cell, word in zip(table._cells, paras[-1].split(), strict=False):
            cell.text = word
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_pptx(pages: list[tuple[str, list[str]]]) -> bytes:
    import pptx

    prs = pptx.Presentation()
    for heading, paras in pages:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = heading
        body = slide.placeholders[1].text_frame
        body.text = paras[0]
        for para in paras[1:3]:
            body.add_paragraph().text = para
        slide.notes_slide.notes_text_frame.text = " ".join(paras[3:])
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_html(pages: list[tuple[str, list[str]]]) -> bytes:
    body = "".join(
        f"<section><h2>{h}</h2>" + "".join(f"<p>{p}</p>" for p in paras) + "</section>" for h, paras in pages
    )
    nav = "<nav><ul>" + "".join(f"<li><a href='#{i}'>Link {i}</a></li>" for i in range(30)) + "</ul></nav>"
    page = f"<!DOCTYPE html><html><head><title>Bench</title></head><body>{nav}<main>{body}</main></body></html>"
    return page.encode()


def make_markdown(pages: list[tuple[str, list[str]]]) -> bytes:
    return "\n\n".join(f"## {h}\n\n" + "\n\n".join(paras) for h, paras in pages).encode()


def make_text(pages: list[tuple[str, list[str]]]) -> bytes:
    return "\n\n".join(f"{h}\n\n" + "\n\n".join(paras) for h, paras in pages).encode()


def make_csv(pages: list[tuple[str, list[str]]]) -> bytes:
    rows = ["id,section,text"]
    for n, (h, paras) in enumerate(pages):
        rows += [f'{n},{h},"{p}"' for p in paras]
    return "\n".join(rows).encode()


def make_eml(pages: list[tuple[str, list[str]]]) -> bytes:
    import email.message

    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "harbour@port.example", "crew@port.example", "Harbour report"
    msg.set_content(make_text(pages).decode())
    return msg.as_bytes()


def make_xlsx(pages: list[tuple[str, list[str]]]) -> bytes:
    """One sheet per 20 pages; a row per paragraph: section, paragraph number, text."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for start in range(0, len(pages), 20):
        sheet = book.create_sheet(f"Sections {start + 1}-{start + 20}")
        sheet.append(("section", "paragraph", "text"))
        for heading, paras in pages[start : start + 20]:
            for n, para in enumerate(paras, start=1):
                sheet.append((heading, n, para))
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def make_with_pandoc(pages: list[tuple[str, list[str]]], to: str) -> Callable[[], bytes]:
    def make() -> bytes:
        import pypandoc

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"doc.{to}"
            extra = ["--metadata", "title=Harbour report"] if to == "epub" else []
            pypandoc.convert_text(make_markdown(pages).decode(), to, format="md", outputfile=str(out), extra_args=extra)
            return out.read_bytes()

    return make


def timed(path: Path, content_type: str, settings: Settings) -> tuple[float, int, dict]:
    best, chars, stats = float("inf"), 0, {}
    for _ in range(3):
        start = time.perf_counter()
        parsed = parse(path, content_type, settings)
        chars = sum(len(e.text) for e in parsed.elements)
        best = min(best, time.perf_counter() - start)
        stats = dict(parsed.stats, page_count=parsed.page_count or 0)
    return best, chars, stats


PEAK_SCRIPT = """
import json, sys, time
from pathlib import Path
from app.embedding.embedder import load_embedder, load_tokenizer, model_dir
from app.settings import Settings
from worker.chunking import Chunker
from worker.parsing import parse
settings = Settings()
embed = sys.argv[2] == "embed"
embedder = load_embedder(settings) if embed else None
chunker = Chunker(load_tokenizer(model_dir(settings)), settings.chunk_max_tokens, settings.chunk_overlap_tokens)
start = time.perf_counter()
parsed = parse(Path(sys.argv[1]), "application/pdf", settings)
chunks = chunker.chunk(parsed.elements)
parsed_s = time.perf_counter() - start
if embed:
    for i in range(0, len(chunks), 256):  # as the worker does: in batches
        embedder.embed([c.text for c in chunks[i : i + 256]])
peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
print(json.dumps({"chunks": len(chunks), "parse_chunk_s": parsed_s, "total_s": time.perf_counter() - start,
                  "peak_mb": peak, "embedder": getattr(embedder, "name", "none")}))
"""


def peak_memory(path: Path, embed: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path), "embed" if embed else "parse"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # two malloc arenas, as the worker runs (devstack/supervisor.py, Dockerfile)
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_ARENA_MAX": "2"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def unstructured_section(pages: list[tuple[str, list[str]]], settings: Settings, tmp: Path) -> str:
    """The long tail through the unstructured extra, and unstructured's `fast` PDF strategy next to ours."""
    if not filetypes.OPTIONAL:
        print("unstructured extra not installed: no long-tail rows, no PDF comparison", flush=True)
        return ""
    formats: list[tuple[str, str, str, Callable[[], bytes]]] = [
        ("EML (plain-text body)", "doc.eml", filetypes.EML, lambda: make_eml(pages)),
        ("EPUB (pandoc)", "doc.epub", filetypes.EPUB, make_with_pandoc(pages, "epub")),
        ("ODT (pandoc)", "doc.odt", filetypes.ODT, make_with_pandoc(pages, "odt")),
        ("RTF (pandoc)", "doc.rtf", filetypes.RTF, make_with_pandoc(pages, "rtf")),
        ("XLSX (10 sheets, a row per paragraph)", "doc.xlsx", filetypes.XLSX, lambda: make_xlsx(pages)),
    ]
    rows = []
    for label, name, content_type, make in formats:
        if content_type not in filetypes.OPTIONAL:
            continue
        path = tmp / name
        path.write_bytes(make())
        seconds, chars, _ = timed(path, content_type, settings)
        n_pages = chars / PAGE_CHARS
        rows.append((label, f"{n_pages:.0f}", f"{path.stat().st_size / 1e6:.2f}", f"{seconds:.2f}",
                     f"{n_pages / seconds:,.0f}", f"{chars / seconds / 1e6:.2f}"))  # fmt: skip
        print(rows[-1], flush=True)

    pdf = tmp / "compare.pdf"
    pdf.write_bytes(make_pdf(pages))
    ours, our_chars, stats = timed(pdf, filetypes.PDF, settings)
    our_elements = sum(1 for _ in parse(pdf, filetypes.PDF, settings).elements)
    comparison = [("docproc (pypdfium2, worker/parsing/pdf.py)", ours, our_chars, our_elements)]
    try:
        from worker.parsing import unstructured as extra

        extra.load()  # NLTK made offline before partition_pdf classifies text
        from unstructured.partition.pdf import partition_pdf
    except ImportError as exc:
        note = (
            f"unstructured's `fast` strategy not measured: `partition_pdf` cannot be imported here ({exc}); "
            "see bench/parse.py for the scratch venv that has what it needs."
        )
        print(note, flush=True)
    else:
        best, chars, count = float("inf"), 0, 0
        for _ in range(3):
            start = time.perf_counter()
            found = partition_pdf(filename=str(pdf), strategy="fast", languages=["eng"])
            best = min(best, time.perf_counter() - start)
            chars, count = sum(len(e.text or "") for e in found), len(found)
        comparison.append(('unstructured `partition_pdf(strategy="fast")` (pdfminer.six)', best, chars, count))
        note = ""
    for row in comparison[1:]:
        print(row[0], f"{row[1]:.2f} s", flush=True)
    n_pages = stats["page_count"]
    lines = [
        "",
        f"### With the unstructured extra (unstructured {_version('unstructured')}, pandoc via pypandoc-binary "
        f"{_version('pypandoc-binary')})",
        "",
        "Long-tail formats, made from the same 200 pages (pandoc and openpyxl), parsed offline "
        f"(`worker/parsing/unstructured.py`); {PAGE_CHARS:,} characters count as a page:",
        "",
        "| format | pages | MB | seconds | pages/s | M chars/s |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        f"The same {n_pages}-page PDF (text layer), best of 3:",
        "",
        "| parser | seconds | pages/s | characters | elements |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {label} | {seconds:.2f} | {n_pages / seconds:,.0f} | {chars:,} | {count:,} |"
            for label, seconds, chars, count in comparison
        ),
        *(["", note] if note else []),
        "",
    ]
    return "\n".join(lines)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-embed", action="store_true", help="skip embedding in the 1,000-page memory run")
    ap.add_argument("--no-write", action="store_true", help="print, do not append to BENCHMARKS.md")
    ap.add_argument(
        "--unstructured-only", action="store_true", help="only the unstructured extra's section (long tail, PDF)"
    )
    args = ap.parse_args()

    rng = random.Random(20240601)
    pages = page_texts(rng)
    settings = Settings()
    if args.unstructured_only:
        with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
            section = unstructured_section(pages, settings, Path(tmp))
        report = f"\n{heading()}\n{section}" if section else ""
        print(report)
        if report and not args.no_write:
            with open(ROOT / "BENCHMARKS.md", "a") as f:
                f.write(report)
        return
    formats: list[tuple[str, str, str, Callable[[], bytes]]] = [
        ("PDF (text layer)", "doc.pdf", filetypes.PDF, lambda: make_pdf(pages)),
        ("DOCX", "doc.docx", filetypes.DOCX, lambda: make_docx(pages)),
        ("PPTX (1 slide = 1 page)", "doc.pptx", filetypes.PPTX, lambda: make_pptx(pages)),
        ("HTML", "doc.html", filetypes.HTML, lambda: make_html(pages)),
        ("Markdown", "doc.md", filetypes.MARKDOWN, lambda: make_markdown(pages)),
        ("CSV", "doc.csv", filetypes.CSV, lambda: make_csv(pages)),
        ("plain text", "doc.txt", filetypes.TEXT, lambda: make_text(pages)),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        for label, name, content_type, make in formats:
            path = Path(tmp) / name
            path.write_bytes(make())
            seconds, chars, stats = timed(path, content_type, settings)
            n_pages = stats["page_count"] if content_type in (filetypes.PDF, filetypes.PPTX) else chars / PAGE_CHARS
            rows.append((label, f"{n_pages:.0f}", f"{path.stat().st_size / 1e6:.1f}", f"{seconds:.2f}",
                         f"{n_pages / seconds:,.0f}", f"{chars / seconds / 1e6:.1f}"))  # fmt: skip
            print(rows[-1], flush=True)

        scan = Path(tmp) / "scan.pdf"
        scan.write_bytes(make_scanned_pdf(rng, OCR_PAGES))
        start = time.perf_counter()
        parsed = parse(scan, filetypes.PDF, settings)
        chars = sum(len(e.text) for e in parsed.elements)
        ocr_s = (time.perf_counter() - start) / OCR_PAGES
        assert parsed.stats["pages_ocr"] == OCR_PAGES, parsed.stats
        rows.append((f"PDF, scanned ({settings.ocr_dpi} dpi OCR, {settings.ocr_languages})", str(OCR_PAGES),
                     f"{scan.stat().st_size / 1e6:.1f}", f"{ocr_s * OCR_PAGES:.2f}", f"{1 / ocr_s:.2f}",
                     f"{chars / (ocr_s * OCR_PAGES) / 1e6:.3f}"))  # fmt: skip
        print(rows[-1], flush=True)

        big = Path(tmp) / "big.pdf"
        big.write_bytes(make_pdf(page_texts(rng) * 5))  # 1,000 pages
        memory = [("parse + chunk", peak_memory(big, embed=False))]
        if not args.no_embed:
            memory.append(("parse + chunk + embed (worker)", peak_memory(big, embed=True)))
        for what, m in memory:
            print(what, m, flush=True)
        section = unstructured_section(pages, settings, Path(tmp))

    report = render(rows, ocr_s, memory) + section
    print(report)
    if not args.no_write:
        with open(ROOT / "BENCHMARKS.md", "a") as f:
            f.write(report)


def heading() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor() or "?",
    )
    return (
        f"## Parsing — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit.stdout.strip() or '?'}"
        f"{' (uncommitted changes)' if dirty else ''}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )


def render(rows: list[tuple[str, ...]], ocr_s: float, memory: list[tuple[str, dict]]) -> str:
    lines = [
        "",
        heading(),
        "",
        "`python -m bench.parse`: parsing alone (elements out), best of 3; formats without pages count "
        f"{PAGE_CHARS:,} characters as a page.",
        "",
        "| format | pages | MB | seconds | pages/s | M chars/s |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        f"OCR: {ocr_s:.2f} s per page (render with pdftoppm + tesseract, one thread).",
        "",
        "1,000-page PDF (text layer), one process, peak RSS (VmHWM):",
        "",
        "| run | chunks | seconds | peak RSS MB |",
        "|---|---:|---:|---:|",
        *(
            f"| {what}{' — ' + m['embedder'] if m['embedder'] != 'none' else ''} | {m['chunks']:,} "
            f"| {m['total_s']:.1f} | {m['peak_mb']} |"
            for what, m in memory
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
