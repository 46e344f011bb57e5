"""DOCX with python-docx: headings (with their path), paragraphs, lists, tables as rows.

The body is walked in document order, content controls and text boxes
included; headers, footers, comments and footnotes are left out. Headings come
from the paragraph style ("Title", "Heading N", or a style based on one) or an
outline level. Page numbers are Word's own: where Word last laid the document
out (`w:lastRenderedPageBreak`); a document never laid out by Word has none.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import docx
from docx.document import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.exceptions import OpcError
from docx.oxml.ns import qn
from docx.styles.style import ParagraphStyle
from lxml import etree

from app.settings import Settings
from worker.parsing import Element, Parsed
from worker.parsing.ooxml import CORRUPT, check_archive, corrupt

_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}
# a text box is written twice: in the drawing (mc:Choice) and in a VML fallback
_TEXT_BOXES = etree.XPath(".//w:txbxContent[not(ancestor::mc:Fallback)]/w:p", namespaces=_NS)
_ROWS = etree.XPath("./w:tr | ./w:sdt/w:sdtContent/w:tr", namespaces=_NS)
_CELLS = etree.XPath("./w:tc | ./w:sdt/w:sdtContent/w:tc", namespaces=_NS)
_CELL_PARAGRAPHS = etree.XPath(".//w:p[not(ancestor::mc:Fallback)]", namespaces=_NS)  # nested tables too
_HEADING_STYLE = re.compile(r"heading\s*([1-9])$")
_PARAGRAPH, _TABLE, _SDT = qn("w:p"), qn("w:tbl"), qn("w:sdt")
_RENDERED_BREAK, _TEXT, _RUN = qn("w:lastRenderedPageBreak"), qn("w:t"), qn("w:r")
# what holds a run that is not the paragraph's own visible text
_NOT_TEXT = frozenset({qn("w:del"), qn("w:moveFrom"), qn("w:txbxContent"), f"{{{_NS['mc']}}}Fallback"})


def parse(path: Path, settings: Settings) -> Parsed:
    check_archive(path, settings, "DOCX")
    try:
        document = docx.Document(str(path))
    except (*CORRUPT, OpcError) as exc:
        raise corrupt("DOCX", exc) from exc
    return Parsed(elements=_elements(document))


def _elements(document: Document) -> Iterator[Element]:
    try:
        yield from _Walker(document).walk()
    except (*CORRUPT, OpcError) as exc:
        raise corrupt("DOCX", exc) from exc


class _Walker:
    def __init__(self, document: Document) -> None:
        self.document = document
        body = document.element.body
        self.page: int | None = 1 if next(body.iter(_RENDERED_BREAK), None) is not None else None
        self.path: list[tuple[int, str]] = []  # (level, heading text); level 0 is the title
        self.styles: dict[str | None, tuple[str, int]] = {}

    def walk(self) -> Iterator[Element]:
        yield from self._blocks(self.document.element.body)

    def _blocks(self, parent: etree._Element) -> Iterator[Element]:
        for child in parent.iterchildren():
            if child.tag == _PARAGRAPH:
                yield from self._paragraph(child)
            elif child.tag == _TABLE:
                yield from self._table(child)
            elif child.tag == _SDT:  # a content control: a cover page, a table of contents ...
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from self._blocks(content)

    def _heading_path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.path)

    def _paragraph(self, p: etree._Element) -> Iterator[Element]:
        page = self._advance_page(p)
        text = _clean(paragraph_text(p))
        kind, level = self._kind(p)
        if text and kind in ("title", "heading"):
            self.path = [(lvl, t) for lvl, t in self.path if lvl < level] + [(level, text)]
            yield Element(text, kind, page, self._heading_path())
        elif text:
            yield Element(text, kind, page, self._heading_path())
        for box in _TEXT_BOXES(p):
            box_text = _clean(paragraph_text(box))
            if box_text:
                yield Element(box_text, "paragraph", page, self._heading_path())

    def _table(self, tbl: etree._Element) -> Iterator[Element]:
        for tr in _ROWS(tbl):
            page = self._advance_page(tr)
            cells = []
            for tc in _CELLS(tr):
                paragraphs = (_clean(paragraph_text(p)) for p in _CELL_PARAGRAPHS(tc))
                cells.append(" ".join(t for t in paragraphs if t))
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                yield Element(" | ".join(cells), "table", page, self._heading_path())

    def _advance_page(self, block: etree._Element) -> int | None:
        """The page `block` starts on; the page counter moves past the page breaks inside it."""
        if self.page is None:
            return None
        leading = trailing = 0
        seen_text = False
        for el in block.iter(_RENDERED_BREAK, _TEXT):
            if el.tag == _TEXT:
                seen_text = seen_text or bool(el.text and el.text.strip())
            elif seen_text:
                trailing += 1
            else:
                leading += 1  # the block starts on the new page
        start = self.page + leading
        self.page = start + trailing
        return start

    def _kind(self, p: etree._Element) -> tuple[str, int]:
        ppr = p.pPr
        if (level := _outline_level(ppr)) is not None:
            return "heading", level
        style_id = p.style  # the w:pStyle value, None for the default style
        if style_id not in self.styles:
            self.styles[style_id] = _style_kind(self.document.part.get_style(style_id, WD_STYLE_TYPE.PARAGRAPH))
        kind, level = self.styles[style_id]
        if kind == "paragraph" and ppr is not None and ppr.numPr is not None:
            return "list", 0
        return kind, level


def paragraph_text(p: etree._Element) -> str:
    """The paragraph's text as the reader sees it: tracked insertions, fields, content controls
    and smart tags included (python-docx's `Paragraph.text` reads only top-level runs and
    hyperlinks), deleted text and text boxes (read on their own) left out."""
    parts = []
    for run in p.iter(_RUN):
        node = run.getparent()
        while node is not None and node is not p and node.tag not in _NOT_TEXT:
            node = node.getparent()
        if node is p:
            parts.append(run.text)  # python-docx's run text: w:t, tabs, breaks
    return "".join(parts)


def _style_kind(style: ParagraphStyle | None) -> tuple[str, int]:
    """(kind, heading level) of a paragraph style, following the styles it is based on."""
    for _ in range(10):  # base-style chains are short; a cycle must not hang the worker
        if style is None:
            break
        name = (style.name or "").strip().lower()
        if name == "title":
            return "title", 0
        if match := _HEADING_STYLE.match(name):
            return "heading", int(match.group(1))
        if name == "caption":
            return "caption", 0
        ppr = style.element.pPr
        if (level := _outline_level(ppr)) is not None:
            return "heading", level
        if ppr is not None and ppr.numPr is not None:
            return "list", 0
        if name.startswith("list"):
            return "list", 0
        style = style.base_style
    return "paragraph", 0


def _outline_level(ppr: etree._Element | None) -> int | None:
    """The heading level an outline level gives (w:outlineLvl 0 is level 1; 9 is body text)."""
    outline = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    value = outline.get(qn("w:val"), "") if outline is not None else ""
    return int(value) + 1 if value.isdigit() and int(value) < 9 else None


def _clean(text: str) -> str:
    return " ".join(text.split())
