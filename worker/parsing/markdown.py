"""Markdown with markdown-it-py: headings give every element its heading path."""

from collections.abc import Iterator
from pathlib import Path

from markdown_it import MarkdownIt

from worker.parsing import Element, Parsed
from worker.parsing.text import decode, paragraphs

_BLOCK_KINDS = {
    "paragraph_open": "paragraph",
    "bullet_list_open": "list",
    "ordered_list_open": "list",
    "table_open": "table",
}


def parse(path: Path) -> Parsed:
    return Parsed(elements=_elements(decode(path.read_bytes())))


def _elements(source: str) -> Iterator[Element]:
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    path: list[tuple[int, str]] = []  # (level, heading text)
    kinds: list[str] = []  # enclosing block kinds, innermost last
    row: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            title = tokens[i + 1].content.strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
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
            row.append(tok.content.strip())
        elif tok.type == "inline" and kinds and tokens[i - 1].type != "heading_open":
            kind = "list" if "list" in kinds else kinds[-1]
            for para in paragraphs(tok.content):
                yield Element(text=para, kind=kind, heading_path=tuple(t for _, t in path))
        elif tok.type in ("fence", "code_block") and tok.content.strip():
            yield Element(text=tok.content.strip(), kind="paragraph", heading_path=tuple(t for _, t in path))
