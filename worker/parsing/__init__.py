"""Parsers: file in, a stream of elements out, chosen by content type.

Each parser is a plain function over a local path; it raises `PipelineError`
for a file it cannot read, with the code that says why.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app import filetypes
from app.status import ErrorCode, PipelineError


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
    stats: dict[str, int] = field(default_factory=dict)


def parse(path: Path, content_type: str) -> Parsed:
    from worker.parsing import markdown, pdf, text

    parsers: dict[str, Callable[[Path], Parsed]] = {
        filetypes.PDF: pdf.parse,
        filetypes.TEXT: text.parse,
        filetypes.MARKDOWN: markdown.parse,
    }
    if content_type not in parsers:
        raise PipelineError(ErrorCode.UNSUPPORTED_TYPE, f"No parser for {content_type}.")
    return parsers[content_type](path)
