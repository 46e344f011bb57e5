"""Plain text in any encoding (charset-normalizer), split into paragraphs."""

import re
from collections.abc import Iterator
from pathlib import Path

from charset_normalizer import from_bytes

from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed

_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\u00a0]+")


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM) first, else the best detected encoding."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        best = from_bytes(data).best()
        if best is None:
            raise PipelineError(ErrorCode.TEXT_UNDECODABLE) from None
        text = str(best)
    return text.replace("\x00", "")


def paragraphs(text: str, join_lines: bool = False) -> Iterator[str]:
    """Paragraphs of `text`, whitespace tidied; lines joined when they are layout, not meaning."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    for block in _BLANK_LINE.split(text):
        if join_lines:
            # "exam-\nple" -> "example"; other line breaks become spaces
            block = re.sub(r"(\w)-\n(\w)", r"\1\2", block).replace("\n", " ")
        lines = [_SPACES.sub(" ", line).strip() for line in block.split("\n")]
        para = "\n".join(line for line in lines if line)
        if para:
            yield para


def parse(path: Path) -> Parsed:
    text = decode(path.read_bytes())
    return Parsed(elements=(Element(text=p, kind="paragraph") for p in paragraphs(text)))
