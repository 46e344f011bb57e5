"""Parsing throughput on this machine: pages per second per format, OCR seconds per page,
and the peak memory of a 1,000-page PDF. Appends the results to BENCHMARKS.md.

    .venv/bin/python -m bench.parse            # about two minutes on 2 cores
    .venv/bin/python -m bench.parse --no-embed # skip the 1,000-page end-to-end memory run

Documents are generated here (seeded, so every run reads the same text). Formats without
pages count one page per 3,000 characters of text, about a printed page. Times are for
parsing alone (elements out, no chunking), the best of three runs.
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

from app import filetypes
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
from app.embedding import load_embedder, load_tokenizer, model_dir
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
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-embed", action="store_true", help="skip embedding in the 1,000-page memory run")
    ap.add_argument("--no-write", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()

    rng = random.Random(20240601)
    pages = page_texts(rng)
    settings = Settings()
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

    report = render(rows, ocr_s, memory)
    print(report)
    if not args.no_write:
        with open(ROOT / "BENCHMARKS.md", "a") as f:
            f.write(report)


def render(rows: list[tuple[str, ...]], ocr_s: float, memory: list[tuple[str, dict]]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor() or "?",
    )
    lines = [
        "",
        f"## Parsing — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit.stdout.strip() or '?'}"
        f"{' (uncommitted changes)' if dirty else ''}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}",
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
