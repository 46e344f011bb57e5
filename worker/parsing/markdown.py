"""Markdown with markdown-it-py: headings give every element its heading path.

markdown-it builds every token of a document at once, at some 100 bytes of
memory per byte of source: the source is parsed in sections of about
`SECTION_CHARS`, cut at blank lines outside fenced code, the heading path
carried from one section to the next.
"""

from collections.abc import Iterator
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.settings import Settings
from worker.parsing import MAX_ELEMENT_CHARS, Element, Parsed, windows
from worker.parsing.text import decode, lines, paragraphs

SECTION_CHARS = 200_000

_BLOCK_KINDS = {
    "paragraph_open": "paragraph",
    "bullet_list_open": "list",
    "ordered_list_open": "list",
    "table_open": "table",
}


def parse(path: Path, settings: Settings) -> Parsed:
    return Parsed(elements=_elements(sections(decode(path.read_bytes()))))


def sections(source: str) -> Iterator[str]:
    """`source` cut into sections of about SECTION_CHARS at blank lines outside fenced code.

    A line longer than MAX_ELEMENT_CHARS outside code is cut into paragraphs of its own.
    """
    parts: list[str] = []
    size = 0
    fence = ""
    for line in lines(source):
        if not fence and len(line) > MAX_ELEMENT_CHARS:
            for piece in windows(line.rstrip("\n")):
                parts.append(piece + "\n\n")
                size += len(piece) + 2
                if size >= SECTION_CHARS:
                    yield "".join(parts)
                    parts, size = [], 0
            continue
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
        elif stripped.startswith(("```", "~~~")) and len(line) - len(line.lstrip(" ")) < 4:
            marker = stripped[0]
            fence = stripped[: len(stripped) - len(stripped.lstrip(marker))]
        parts.append(line)
        size += len(line)
        if size >= SECTION_CHARS and not fence and not stripped:
            yield "".join(parts)
            parts, size = [], 0
    if parts:
        yield "".join(parts)


def _elements(sources: Iterator[str]) -> Iterator[Element]:
    md = MarkdownIt("commonmark").enable("table")
    path: list[tuple[int, str]] = []  # (level, heading text), carried across sections
    for source in sources:
        yield from _section(md.parse(source), path)


def _section(tokens: list[Token], path: list[tuple[int, str]]) -> Iterator[Element]:
    kinds: list[str] = []  # enclosing block kinds, innermost last
    row: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            title = " ".join(_inline_text(tokens[i + 1]).split())
            path[:] = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            if title:
                yield Element(
                    text=title,
                    kind="title" if level == 1 and len(path) == 1 else "heading",
                    heading_path=tuple(t for _, t in path),
                )
        elif tok.type in _BLOCK_KINDS:
            kinds.append(_BLOCK_KINDS[tok.type])
        elif tok.type in ("paragraph_close", "bullet_list_close", "ordered_list_close", "table_close"):
            kinds.pop()
        elif tok.type == "tr_close":
            yield Element(text=" | ".join(row), kind="table", heading_path=tuple(t for _, t in path))
            row = []
        elif tok.type == "inline" and kinds and kinds[-1] == "table":
            row.append(" ".join(_inline_text(tok).split()))
        elif tok.type == "inline" and kinds and tokens[i - 1].type != "heading_open":
            kind = "list" if "list" in kinds else kinds[-1]
            for para in paragraphs(_inline_text(tok)):
                yield Element(text=para, kind=kind, heading_path=tuple(t for _, t in path))
        elif tok.type in ("fence", "code_block") and tok.content.strip():
            yield Element(text=tok.content.strip(), kind="paragraph", heading_path=tuple(t for _, t in path))


def _inline_text(tok: Token) -> str:
    """The text of an inline token without its markup: `**bold**` is "bold", `[a](url)` is "a"."""
    parts = []
    for child in tok.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)
