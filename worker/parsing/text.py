"""Plain text in any encoding (charset-normalizer), split into paragraphs."""

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from charset_normalizer import from_bytes

from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed, windows

_NEWLINE = r"(?:\r\n|\r|\n)"
_BLANK_LINES = re.compile(rf"{_NEWLINE}(?:[ \t\f\v]*{_NEWLINE})+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_SAMPLE = 65536  # characters looked at, at the start, middle and end, to tell text from binary


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM) first, else the best detected encoding.

    Raises `text_undecodable` for bytes that are no text in any encoding, or that
    decode to mostly control characters (binary data that happens to decode).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        best = from_bytes(data).best()
        if best is None:
            raise PipelineError(ErrorCode.TEXT_UNDECODABLE) from None
        text = str(best)
    if _looks_binary(text):
        raise PipelineError(ErrorCode.TEXT_UNDECODABLE, "The file is binary data, not text.")
    return text.replace("\x00", "")


def _looks_binary(text: str) -> bool:
    if len(text) <= 3 * _SAMPLE:
        sample = text
    else:
        middle = len(text) // 2
        sample = text[:_SAMPLE] + text[middle : middle + _SAMPLE] + text[-_SAMPLE:]
    bad = sum(1 for ch in sample if ch not in "\t\n\r\f\v" and unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs"))
    bad += sample.count("\ufffd")
    return bad > len(sample) // 20


def lines(text: str) -> Iterator[str]:
    """The lines of `text`, line ends kept, one at a time (str.splitlines would list them all)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end == -1 else end + 1
        yield text[start:end]
        start = end


def paragraphs(text: str, join_lines: bool = False) -> Iterator[str]:
    """Paragraphs of `text`, whitespace tidied; lines joined when they are layout, not meaning.

    Lazy: a large text is handled one paragraph at a time.
    """
    start = 0
    for sep in _BLANK_LINES.finditer(text):
        yield from _paragraph(text[start : sep.start()], join_lines)
        start = sep.end()
    yield from _paragraph(text[start:], join_lines)


def _paragraph(block: str, join_lines: bool) -> Iterator[str]:
    for piece in windows(block):  # a 50 MB paragraph is cleaned 8,000 characters at a time
        piece = _CONTROL.sub("", piece.replace("\r\n", "\n").replace("\r", "\n"))
        if join_lines:
            # "exam-\nple" -> "example"; other line breaks become spaces
            piece = re.sub(r"(\w)-\n(\w)", r"\1\2", piece).replace("\n", " ")
        lines = [_SPACES.sub(" ", line).strip() for line in piece.split("\n")]
        para = "\n".join(line for line in lines if line)
        if para:
            yield para


def parse(path: Path, settings: Settings) -> Parsed:
    text = decode(path.read_bytes())
    return Parsed(elements=(Element(text=p, kind="paragraph") for p in paragraphs(text)))
