"""PDF text layer with pypdfium2, one page at a time."""

from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium

from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed
from worker.parsing.text import paragraphs


def _open(path: Path) -> pdfium.PdfDocument:
    try:
        # PDFium tries the empty user password by itself
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise PipelineError(ErrorCode.PDF_ENCRYPTED) from exc
        raise PipelineError(ErrorCode.PDF_CORRUPT, f"The PDF could not be read ({exc}).") from exc


def parse(path: Path) -> Parsed:
    doc = _open(path)
    return Parsed(elements=_pages(doc), page_count=len(doc))


def _pages(doc: pdfium.PdfDocument) -> Iterator[Element]:
    try:
        for index in range(len(doc)):
            try:
                page = doc[index]
                textpage = page.get_textpage()
                raw = textpage.get_text_bounded()
            except pdfium.PdfiumError as exc:
                raise PipelineError(ErrorCode.PDF_CORRUPT, f"Page {index + 1} could not be read ({exc}).") from exc
            for para in paragraphs(raw, join_lines=True):
                yield Element(text=para, kind="paragraph", page=index + 1)
            textpage.close()
            page.close()
    finally:
        doc.close()
