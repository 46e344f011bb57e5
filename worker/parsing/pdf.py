"""PDF with pypdfium2, one page at a time: the text layer, or OCR for a page without one.

Per page: the text layer's segments are put in reading order and joined into
paragraphs (worker/parsing/layout.py); larger type makes headings. A page with
no text layer but something drawn on it (a scan, an image-only page inside an
otherwise normal PDF) is rendered and OCR'd (worker/parsing/ocr.py), unless OCR
is off (then it is skipped and counted). Only the current page is in memory.
"""

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from app.settings import Settings
from app.status import MESSAGES, ErrorCode, PipelineError
from worker.parsing import Element, Parsed, limit_exceeded
from worker.parsing.layout import LIST_MARK, Block, Segment, blocks, reading_order
from worker.parsing.text import paragraphs

HEADING_SIZE = 1.2  # × the body text's font size
MIN_TEXT_CHARS = 16  # fewer characters than this over a full-page image: a stamp on a scan, OCR it
MIN_IMAGE_COVER = 0.1  # of the page: a page without text showing less image than this is blank
FULL_PAGE_COVER = 0.8
MIN_PATHS = 100  # vector drawings: text converted to outlines is OCR'd too
MAX_OBJECTS = 5000  # page objects looked at when deciding whether a page needs OCR

_PAGE_NUMBER = re.compile(r"^[-–—\s]*(page\s*)?([0-9]+|[ivxlcdm]+)(\s*(of|/)\s*[0-9]+)?[-–—\s]*$", re.IGNORECASE)
_LEADER = re.compile(r"(\.\s?){4,}")  # the dots of a table of contents line
_CAPTION = re.compile(r"^(figure|fig\.|table|tab\.|exhibit|chart|listing)\s*[0-9ivx]+[a-z]?\s*[.:)\-–]", re.IGNORECASE)


def _open(path: Path) -> pdfium.PdfDocument:
    try:
        # PDFium tries the empty user password by itself
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise PipelineError(ErrorCode.PDF_ENCRYPTED) from exc
        raise PipelineError(ErrorCode.PDF_CORRUPT, f"{MESSAGES[ErrorCode.PDF_CORRUPT]} ({exc})") from exc


def parse(path: Path, settings: Settings) -> Parsed:
    doc = _open(path)
    count = len(doc)
    stats = {"pages_text": 0, "pages_ocr": 0, "pages_blank": 0, "pages_ocr_skipped": 0}
    pages = count
    if count > settings.max_pages:
        try:
            limit_exceeded(
                settings,
                stats,
                ErrorCode.TOO_MANY_PAGES,
                f"The PDF has {count:,} pages; at most {settings.max_pages:,} are allowed (MAX_PAGES).",
            )
        except PipelineError:
            doc.close()
            raise
        stats["pages_truncated"] = count - settings.max_pages
        pages = settings.max_pages
    return Parsed(elements=_elements(doc, path, pages, settings, stats), page_count=count, stats=stats)


@dataclass
class _State:
    """What reading one page needs to know about the pages before it."""

    sizes: Counter[float] = field(default_factory=Counter)  # characters per font size
    headings: list[tuple[float, str]] = field(default_factory=list)  # (font size, text), outermost first
    edges: Counter[str] = field(default_factory=Counter)  # first and last lines of pages: running heads
    titled: bool = False
    ocr_checked: bool = False  # the pages still to OCR were counted against the limit

    def heading_path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.headings)


def _elements(doc: pdfium.PdfDocument, path: Path, pages: int, settings: Settings, stats: dict) -> Iterator[Element]:
    state = _State()
    emitted = 0
    try:
        for index in range(pages):
            page_number = index + 1
            try:
                page = doc[index]
                try:
                    segments = _segments(page)
                    scanned = _needs_ocr(page, sum(len(s.text.strip()) for s in segments))
                    page_size = page.get_size()
                    width = page_size[0]
                finally:
                    page.close()
            except pdfium.PdfiumError as exc:
                message = f"Page {page_number} of the PDF could not be read: it is damaged ({exc})."
                raise PipelineError(ErrorCode.PDF_CORRUPT, message) from exc
            if scanned:
                elements = _ocr_page(doc, path, index, pages, page_size, settings, stats, state)
            else:
                elements = _text_page(segments, width, page_number, state)
                if elements:
                    stats["pages_text"] += 1
            if not elements and not scanned:
                stats["pages_blank"] += 1
            emitted += len(elements)
            yield from elements
        if emitted == 0:
            _nothing_read(pages, stats)
    finally:
        doc.close()


def _nothing_read(pages: int, stats: dict) -> None:
    if stats["pages_ocr_skipped"]:
        raise PipelineError(
            ErrorCode.OCR_DISABLED,
            f"{stats['pages_ocr_skipped']} of the PDF's {pages} pages are scanned images without a text layer, "
            "and OCR is turned off (OCR_ENABLED), so there is no text to index.",
        )
    if stats.get("ocr_pages_truncated"):
        raise PipelineError(
            ErrorCode.TOO_MANY_OCR_PAGES, "No page within the MAX_OCR_PAGES limit has any text to index."
        )
    if stats["pages_ocr"]:
        raise PipelineError(ErrorCode.NO_TEXT, "OCR found no text on the scanned pages.")
    raise PipelineError(ErrorCode.NO_TEXT, f"All {pages} pages of the PDF are blank: there is no text to index.")


def _segments(page: pdfium.PdfPage) -> list[Segment]:
    textpage = page.get_textpage()
    try:
        out = []
        for i in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(i)
            text = textpage.get_text_bounded(left, bottom, right, top)
            if not text.strip():
                continue
            size = 0.0
            for x in (left + min(2.0, (right - left) / 2), (left + right) / 2):  # a glyph, not the white between
                index = textpage.get_index(x, (bottom + top) / 2, 1.0, max(1.0, (top - bottom) / 2))
                if index is not None and index >= 0:
                    size = pdfium_c.FPDFText_GetFontSize(textpage, index)
                    if size > 0:
                        break
            out.append(Segment(left, bottom, right, top, text, float(size), i))
        return out
    finally:
        textpage.close()


def _needs_ocr(page: pdfium.PdfPage, text_chars: int) -> bool:
    """No text layer (or a stamp's worth over a full-page image), but an image or drawing to read."""
    if text_chars >= MIN_TEXT_CHARS:
        return False
    width, height = page.get_size()
    area = max(width * height, 1.0)
    cover, paths = 0.0, 0
    for n, obj in enumerate(page.get_objects(max_depth=3)):
        if n >= MAX_OBJECTS:
            break
        if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            left, bottom, right, top = obj.get_bounds()
            visible = max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(top, height) - max(bottom, 0.0))
            cover = max(cover, visible / area)
        elif obj.type == pdfium_c.FPDF_PAGEOBJ_PATH:
            paths += 1
    if text_chars:
        return cover >= FULL_PAGE_COVER
    return cover >= MIN_IMAGE_COVER or paths >= MIN_PATHS


def _ocr_page(
    doc: pdfium.PdfDocument,
    path: Path,
    index: int,
    pages: int,
    page_size: tuple[float, float],
    settings: Settings,
    stats: dict,
    state: _State,
) -> list[Element]:
    if not settings.ocr_enabled:
        stats["pages_ocr_skipped"] += 1
        return []
    if not state.ocr_checked and settings.limit_mode == "fail":
        # fail before hours of OCR, not after: count the pages still to OCR once, at the first
        state.ocr_checked = True
        if stats["pages_ocr"] + _count_scanned(doc, index, pages) > settings.max_ocr_pages:
            _too_many_ocr_pages(settings, stats)
    if stats["pages_ocr"] >= settings.max_ocr_pages:
        _too_many_ocr_pages(settings, stats)
        stats["ocr_pages_truncated"] = stats.get("ocr_pages_truncated", 0) + 1
        return []
    from worker.parsing import ocr  # pytesseract and pdf2image only once a page needs OCR

    text = ocr.page_text(path, index + 1, page_size, settings)
    stats["pages_ocr"] += 1
    path_now = state.heading_path()
    return [Element(p, "paragraph", index + 1, path_now) for p in paragraphs(text, join_lines=True)]


def _too_many_ocr_pages(settings: Settings, stats: dict) -> None:
    limit_exceeded(
        settings,
        stats,
        ErrorCode.TOO_MANY_OCR_PAGES,
        f"The PDF has more than {settings.max_ocr_pages:,} pages without a text layer to OCR (MAX_OCR_PAGES).",
    )


def _count_scanned(doc: pdfium.PdfDocument, start: int, stop: int) -> int:
    count = 0
    for index in range(start, stop):
        try:
            page = doc[index]
        except pdfium.PdfiumError:
            continue  # reading the page itself will say what is wrong with it
        try:
            textpage = page.get_textpage()
            try:
                chars = len(textpage.get_text_range().strip())
            finally:
                textpage.close()
            count += _needs_ocr(page, chars)
        except pdfium.PdfiumError:
            pass
        finally:
            page.close()
    return count


def _text_page(segments: list[Segment], width: float, page_number: int, state: _State) -> list[Element]:
    for seg in segments:
        state.sizes[round(seg.size * 2) / 2] += len(seg.text)
    body = state.sizes.most_common(1)[0][0] if state.sizes else 0.0
    found = [b for b in blocks(reading_order(segments, width)) if not _PAGE_NUMBER.match(b.text)]
    # running heads and feet: the same first or last line on page after page (from the third on)
    edges = {i: _edge_key(found[i]) for i in {0, len(found) - 1} if found and len(found[i].text) <= 120}
    found = [b for i, b in enumerate(found) if not (i in edges and state.edges[edges[i]] >= 2)]
    state.edges.update(set(edges.values()))
    out = []
    for block in found:
        kind = _kind(block, body)
        if kind == "heading":
            while state.headings and state.headings[-1][0] <= block.size + 0.25:
                state.headings.pop()
            state.headings.append((block.size, block.text))
            if not state.titled and page_number == 1:
                kind = "title"
            state.titled = True
        out.append(Element(block.text, kind, page_number, state.heading_path()))
    return out


def _edge_key(block: Block) -> str:
    return re.sub(r"[0-9]+", "#", block.text.lower())


def _kind(block: Block, body: float) -> str:
    text = block.text
    if (
        body
        and block.size >= HEADING_SIZE * body
        and block.lines <= 3
        and len(text) <= 200
        and any(ch.isalpha() for ch in text)
        and not text.endswith((".", ",", ";"))
        and not _LEADER.search(text)
    ):
        return "heading"
    if _CAPTION.match(text):
        return "caption"
    if LIST_MARK.match(text):
        return "list"
    return "paragraph"
