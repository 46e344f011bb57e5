"""Parsers: file in, a stream of elements out, chosen by content type.

Each parser is a plain function `parse(path, settings) -> Parsed` over a local
path, in its own module; it raises `PipelineError` for a file it cannot read,
with the code that says why. Elements are produced lazily (page by page for
PDFs), so a consumer holds one page at a time. `parse` wraps every parser's
stream with the limits every format shares: no element longer than
`MAX_ELEMENT_CHARS`, no more than `max_characters` in all.

`Parsed.stats` is filled in while the stream is consumed; read it afterwards.
"""

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from app.intake import filetypes
from app.settings import Settings, get_settings
from app.status import ErrorCode, PipelineError

# An element is cut into pieces of at most this many characters (at a sentence or a
# space when there is one): a 50 MB single-line file must not reach the tokenizer in one
# piece. Far above the chunk size, so the chunker's own windows and overlap still apply.
MAX_ELEMENT_CHARS = 8000


@dataclass(frozen=True)
class Element:
    text: str
    kind: str  # title | heading | paragraph | list | table | caption
    page: int | None = None
    heading_path: tuple[str, ...] = ()


@dataclass
class Parsed:
    elements: Iterator[Element]
    page_count: int | None = None
    # counters for the file's status, e.g. pages_ocr, pages_blank, characters, truncated
    stats: dict[str, int] = field(default_factory=dict)


# content type -> the module under worker/parsing/ whose parse() reads it; the long tail
# (EML, MSG, EPUB, ODT, RTF, XLSX) goes to the optional unstructured extra
PARSER_MODULES: dict[str, str] = {
    filetypes.PDF: "pdf",
    filetypes.DOCX: "docx",
    filetypes.PPTX: "pptx",
    filetypes.HTML: "html",
    filetypes.MARKDOWN: "markdown",
    filetypes.CSV: "csv",
    filetypes.TEXT: "text",
    **dict.fromkeys(filetypes.OPTIONAL, "unstructured"),
}


def parse(path: Path, content_type: str, settings: Settings | None = None) -> Parsed:
    if content_type not in PARSER_MODULES:
        raise PipelineError(ErrorCode.UNSUPPORTED_TYPE, f"No parser for {content_type}.")
    # imported on first use: all of them at once cost a fresh worker 0.45 s (bench/coldstart.py)
    module = importlib.import_module(f"worker.parsing.{PARSER_MODULES[content_type]}")
    reader: Callable[[Path, Settings], Parsed] = module.parse
    if content_type in filetypes.OPTIONAL:  # one parser for the whole long tail, told which type
        reader = partial(module.parse, content_type=content_type)
    settings = settings or get_settings()
    parsed = reader(path, settings)
    parsed.elements = _bounded(parsed.elements, parsed.stats, settings)
    return parsed


def limit_exceeded(settings: Settings, stats: dict[str, int], code: ErrorCode, message: str) -> None:
    """A limit was reached: fail with `code`, or record the truncation and let the caller stop."""
    if settings.limit_mode == "fail":
        raise PipelineError(code, message)
    stats["truncated"] = 1


def _bounded(elements: Iterator[Element], stats: dict[str, int], settings: Settings) -> Iterator[Element]:
    stats.setdefault("characters", 0)
    try:
        for element in elements:
            for piece in split_long(element):
                size = len(piece.text)
                if stats["characters"] + size > settings.max_characters:
                    limit_exceeded(
                        settings,
                        stats,
                        ErrorCode.TOO_MANY_CHARACTERS,
                        f"The document has more than {settings.max_characters:,} characters of text "
                        "(the MAX_CHARACTERS limit).",
                    )
                    stats["characters_truncated"] = 1
                    rest = _cut(piece.text, settings.max_characters - stats["characters"])
                    if rest:
                        stats["characters"] += len(rest)
                        yield replace(piece, text=rest)
                    return
                stats["characters"] += size
                yield piece
    finally:
        close = getattr(elements, "close", None)
        if close is not None:
            close()  # a parser's cleanup (closing the PDF) runs now, not when garbage-collected


_SENTENCE_END = re.compile(r"[.!?。！？]\s")


def split_long(element: Element, limit: int = MAX_ELEMENT_CHARS) -> Iterator[Element]:
    """`element`, or pieces of it of at most `limit` characters, cut at a sentence end or a space."""
    if len(element.text) <= limit:
        yield element
        return
    for piece in windows(element.text, limit):
        if piece := piece.strip():
            yield replace(element, text=piece)


def windows(text: str, limit: int = MAX_ELEMENT_CHARS) -> Iterator[str]:
    """`text` in consecutive pieces of at most `limit` characters, cut at a sentence end or a space.

    Cleaning a huge string in one go (split, a regex substitution) costs many times its
    size in memory; piece by piece it costs one piece.
    """
    start = 0
    while len(text) - start > limit:
        end = _cut_point(text, start, start + limit)
        yield text[start:end]
        start = end
    yield text[start:] if start else text


def clean_spaces(text: str) -> str:
    """Runs of white space (line breaks included) as one space, ends stripped; any length of text."""
    if len(text) <= MAX_ELEMENT_CHARS:
        return " ".join(text.split())
    return " ".join(" ".join(piece.split()) for piece in windows(text)).strip()


def _cut_point(text: str, start: int, end: int) -> int:
    floor = start + (end - start) // 2  # never a piece shorter than half the limit
    last = None
    for match in _SENTENCE_END.finditer(text, floor, end):
        last = match
    if last is not None:
        return last.end()
    space = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end))
    return space + 1 if space != -1 else end


def _cut(text: str, size: int) -> str:
    if size <= 0:
        return ""
    if size >= len(text):
        return text
    space = text.rfind(" ", size // 2, size)
    return text[: space if space != -1 else size].strip()
