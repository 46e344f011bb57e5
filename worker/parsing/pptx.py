"""PPTX with python-pptx: one page per slide; its title heads the slide's text frames,
tables, picture descriptions, chart titles and speaker notes.

Shapes are read top to bottom, then left to right, groups included. Bulleted
body text is `list`; free text boxes are `paragraph`.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER
from pptx.exc import PythonPptxError
from pptx.shapes.base import BaseShape
from pptx.slide import Slide

from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed, limit_exceeded
from worker.parsing.ooxml import CORRUPT, check_archive, corrupt

_TITLES = (PP_PLACEHOLDER.TITLE, PP_PLACEHOLDER.CENTER_TITLE, PP_PLACEHOLDER.VERTICAL_TITLE)
_BULLETS = (PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT, PP_PLACEHOLDER.VERTICAL_BODY, PP_PLACEHOLDER.VERTICAL_OBJECT)
_ERRORS = (*CORRUPT, PythonPptxError)


def parse(path: Path, settings: Settings) -> Parsed:
    check_archive(path, settings, "PPTX")
    try:
        slides = list(pptx.Presentation(str(path)).slides)
    except _ERRORS as exc:
        raise corrupt("PPTX", exc) from exc
    stats: dict[str, int] = {}
    count = len(slides)
    if count > settings.max_pages:
        limit_exceeded(
            settings,
            stats,
            ErrorCode.TOO_MANY_PAGES,
            f"The presentation has {count:,} slides; at most {settings.max_pages:,} are allowed (MAX_PAGES).",
        )
        stats["pages_truncated"] = count - settings.max_pages
        slides = slides[: settings.max_pages]
    return Parsed(elements=_elements(slides), page_count=count, stats=stats)


def _elements(slides: list[Slide]) -> Iterator[Element]:
    for number, slide in enumerate(slides, start=1):
        try:
            yield from _slide(slide, number)
        except _ERRORS as exc:
            raise PipelineError(ErrorCode.DOCUMENT_CORRUPT, f"Slide {number} could not be read ({exc}).") from exc


def _slide(slide: Slide, page: int) -> Iterator[Element]:
    title_shape = slide.shapes.title
    title = _clean(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
    path = (title,) if title else ()
    if title:
        centred = title_shape.placeholder_format.type == PP_PLACEHOLDER.CENTER_TITLE
        yield Element(title, "title" if centred else "heading", page, path)
    for shape in _in_reading_order(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        yield from _shape(shape, page, path)
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        for paragraph in notes.paragraphs if notes is not None else ():
            if text := _clean(paragraph.text):
                yield Element(text, "paragraph", page, path)


def _in_reading_order(shapes: Iterable[BaseShape]) -> list[BaseShape]:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape(shape: BaseShape, page: int, path: tuple[str, ...]) -> Iterator[Element]:
    shape_type = _shape_type(shape)
    if shape_type == MSO_SHAPE_TYPE.GROUP:
        for child in _in_reading_order(shape.shapes):
            yield from _shape(child, page, path)
    elif shape.has_text_frame:
        placeholder = shape.placeholder_format.type if shape.is_placeholder else None
        if placeholder in _TITLES:
            kind = "heading"  # a second title placeholder
        elif placeholder in _BULLETS:
            kind = "list"
        else:
            kind = None
        for paragraph in shape.text_frame.paragraphs:
            if text := _clean(paragraph.text):
                yield Element(text, kind or ("list" if paragraph.level > 0 else "paragraph"), page, path)
    elif getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            cells = [_clean(cell.text) for cell in row.cells]
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                yield Element(" | ".join(cells), "table", page, path)
    elif getattr(shape, "has_chart", False) and shape.has_chart:
        chart = shape.chart
        title = chart.chart_title.text_frame.text if chart.has_title and chart.chart_title.has_text_frame else ""
        if text := _clean(title):
            yield Element(text, "caption", page, path)
    if shape_type == MSO_SHAPE_TYPE.PICTURE:
        description = shape.element.xpath("./p:nvPicPr/p:cNvPr/@descr")
        if description and (text := _clean(description[0])):
            yield Element(text, "caption", page, path)


def _shape_type(shape: BaseShape) -> MSO_SHAPE_TYPE | None:
    try:
        return shape.shape_type
    except NotImplementedError:  # an autoshape python-pptx does not know: its text is still read
        return None


def _clean(text: str) -> str:
    return " ".join(text.replace("\x0b", " ").split())
