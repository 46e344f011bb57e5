"""HTML with lxml, as a stream: headings (with their path), paragraphs, list items,
table rows, captions; scripts, styles, navigation and other page furniture dropped.

The page is fed to lxml's pull parser 64 KB at a time and each element is
cleared once read, so memory stays flat for a large page. Nesting deeper than
`max_html_depth` fails the file (`html_too_deep`): libxml2 would otherwise stop
reading at its own limit without a word, and the rest of the page would be lost.
"""

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes
from lxml import etree

from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import MAX_ELEMENT_CHARS, Element, Parsed, clean_spaces, windows

_READ = 65536
# never text for a reader
_DROP = frozenset(
    {
        "head", "script", "style", "noscript", "template", "svg", "math", "iframe", "frame", "object", "embed",
        "canvas", "select", "option", "button", "textarea", "dialog", "map",
    }
)  # fmt: skip
# page furniture, as a rule; dropped unless nothing else is left (some pages put everything in one <aside>)
_FURNITURE = frozenset({"nav", "aside", "footer"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = {
    **dict.fromkeys(
        ("html", "body", "main", "article", "section", "div", "p", "blockquote", "address", "center", "details",
         "summary", "fieldset", "figure", "dl", "dt", "dd", "header", "hgroup", "pre", "hr", "table", "thead",
         "tbody", "tfoot", "legend"),
        "paragraph",
    ),
    **dict.fromkeys(("ul", "ol", "li", "menu", "dir"), "list"),
    **dict.fromkeys(("caption", "figcaption"), "caption"),
}  # fmt: skip
_CELLS = frozenset({"td", "th"})
_CONTENT = frozenset({"html", "body", "main", "article"})  # never dropped as boilerplate
_BOILERPLATE_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog"})
# class or id names of page furniture; matched at the start of a name ("sidebar-left", not "with-sidebar")
_BOILERPLATE_NAME = re.compile(
    r"^(nav|navbar|navigation|menu|breadcrumbs?|sidebar|cookies?|consent|gdpr|advert\w*|ads?|social|share|"
    r"sharing|newsletter|popup|modal|skip)([-_]|$)",
    re.IGNORECASE,
)
_SOURCE_WHITESPACE = str.maketrans("\n\r\t\f\v", "     ")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def parse(path: Path, settings: Settings) -> Parsed:
    return Parsed(elements=_elements(path, settings))


def _elements(path: Path, settings: Settings) -> Iterator[Element]:
    walker = _Walker(settings.max_html_depth, heuristics=True)
    yield from walker.run(path)
    if walker.emitted == 0 and walker.guessed:
        # everything was dropped as navigation, footer, sidebar ...: better to read it all
        yield from _Walker(settings.max_html_depth, heuristics=False).run(path)


def encoding(head: bytes) -> str:
    """The page's encoding: a byte-order mark, a <meta charset>, valid UTF-8, else a guess."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            return name
    if match := _META_CHARSET.search(head[:16384]):
        try:
            name = codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            pass
        else:
            # browsers read these as windows-1252, and so do pages that declare them; a page that
            # declares UTF-16 without a byte-order mark is not UTF-16 (ASCII made the meta readable)
            if not name.startswith(("utf-16", "utf-32")):
                return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut in two by the end of the sample
            return "utf-8"
    best = from_bytes(head).best()
    return best.encoding if best is not None else "cp1252"


@dataclass
class _Walker:
    max_depth: int
    heuristics: bool  # drop furniture (nav, aside, footer, and by class, id and role), not only scripts and such
    emitted: int = 0
    guessed: bool = False  # something was dropped by the heuristics
    tags: list[str] = field(default_factory=list)  # open elements, outermost first
    kinds: list[str] = field(default_factory=list)  # kinds of the open blocks
    buffer: list[str] = field(default_factory=list)  # inline text of the innermost block so far
    cell: list[str] | None = None
    row: list[str] | None = None
    cell_depth: int = 0
    drop_depth: int = 0  # open elements inside (and including) a dropped one
    path: list[tuple[int, str]] = field(default_factory=list)  # (level, heading text)

    def run(self, path: Path) -> Iterator[Element]:
        parser = etree.HTMLPullParser(
            events=("start", "end"), huge_tree=True, remove_comments=True, remove_pis=True, no_network=True
        )
        with open(path, "rb") as f:
            head = f.read(_READ)
            decoder = codecs.getincrementaldecoder(encoding(head))(errors="replace")
            chunk = head
            while chunk:
                parser.feed(decoder.decode(chunk))
                yield from self._events(parser)
                chunk = f.read(_READ)
        parser.feed(decoder.decode(b"", final=True))
        parser.close()
        yield from self._events(parser)

    def _events(self, parser: etree.HTMLPullParser) -> Iterator[Element]:
        for event, el in parser.read_events():
            if not isinstance(el.tag, str):
                continue
            if event == "start":
                yield from self._start(el)
            else:
                yield from self._end(el)

    def _start(self, el: etree._Element) -> Iterator[Element]:
        if len(self.tags) >= self.max_depth:
            raise PipelineError(
                ErrorCode.HTML_TOO_DEEP,
                f"The HTML is nested more than {self.max_depth} levels deep (MAX_HTML_DEPTH): too deep to read safely.",
            )
        parent, previous = el.getparent(), el.getprevious()
        self._text(previous.tail if previous is not None else parent.text if parent is not None else None)
        if parent is not None:
            while el.getprevious() is not None:  # read, tails included: free them
                del parent[0]
        tag = el.tag.lower()
        drop = self.drop_depth > 0 or self._is_furniture(el, tag)
        self.tags.append(tag)
        if drop:
            self.drop_depth += 1
            return
        if self.cell_depth:  # inside a table cell everything is part of the cell's text
            self.cell_depth += tag in _CELLS
            if tag in _BLOCKS or tag in _HEADINGS or tag in _CELLS or tag in ("br", "tr"):
                self._text(" ")
        elif tag in _CELLS:
            self.cell_depth, self.cell = 1, []
        elif tag == "tr":
            yield from self._flush()
            self.row = []
        elif tag in _HEADINGS or tag in _BLOCKS:
            yield from self._flush()
            kind = "heading" if tag in _HEADINGS else _BLOCKS[tag]
            if kind == "paragraph" and self.kinds and self.kinds[-1] in ("list", "caption"):
                kind = self.kinds[-1]  # <li><p>item</p></li> is a list item
            self.kinds.append(kind)
        elif tag == "br":
            self._text("\n", verbatim=True)

    def _end(self, el: etree._Element) -> Iterator[Element]:
        if not self.tags:
            return
        self._text(el[-1].tail if len(el) else el.text)
        tag = self.tags.pop()
        if self.drop_depth:
            self.drop_depth -= 1
        elif self.cell_depth:
            self.cell_depth -= tag in _CELLS
            if self.cell_depth == 0:
                cell = clean_spaces("".join(self.cell or []))
                if self.row is not None:
                    self.row.append(cell)
                elif cell:  # a cell outside any row
                    yield self._element(cell, "table")
                self.cell = None
        elif tag == "tr":
            cells = self.row or []
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                yield self._element(" | ".join(cells), "table")
            self.row = None
        elif tag in _HEADINGS:
            text = clean_spaces("".join(self.buffer))
            self.buffer.clear()
            self.kinds.pop()
            if text:
                level = _HEADINGS[tag]
                kind = "title" if level == 1 and not self.path else "heading"
                self.path = [(lvl, t) for lvl, t in self.path if lvl < level] + [(level, text)]
                yield self._element(text, kind)
        elif tag in _BLOCKS:
            yield from self._flush()
            self.kinds.pop()
        el.clear(keep_tail=True)

    def _text(self, text: str | None, verbatim: bool = False) -> None:
        if not text or self.drop_depth:
            return
        if not verbatim and "pre" not in self.tags:
            text = text.translate(_SOURCE_WHITESPACE)  # a line break in the source is a space; <br> is one
        if self.cell is not None:
            self.cell.append(text)
        else:
            self.buffer.append(text)

    def _flush(self) -> Iterator[Element]:
        """The buffered text as an element: its lines (<br>, or <pre>'s) kept, spaces collapsed.

        A huge text node is cut into several elements as it is cleaned, never copied whole.
        """
        if not self.buffer:
            return
        raw = "".join(self.buffer)
        self.buffer.clear()
        kind = self.kinds[-1] if self.kinds else "paragraph"
        lines: list[str] = []
        size = 0
        for line in raw.split("\n"):
            for piece in windows(line):
                if not (piece := " ".join(piece.split())):
                    continue
                if size + len(piece) > MAX_ELEMENT_CHARS and lines:
                    yield self._element("\n".join(lines), kind)
                    lines, size = [], 0
                lines.append(piece)
                size += len(piece) + 1
        if lines:
            yield self._element("\n".join(lines), kind)

    def _element(self, text: str, kind: str) -> Element:
        self.emitted += 1
        return Element(text, kind, None, tuple(t for _, t in self.path))

    def _is_furniture(self, el: etree._Element, tag: str) -> bool:
        if tag in _DROP:
            return True
        if tag in _CONTENT:
            return False
        if el.get("hidden") is not None or el.get("aria-hidden", "").lower() == "true":
            return True
        if _HIDDEN_STYLE.search(el.get("style", "")):
            return True
        if not self.heuristics or tag in _HEADINGS:
            return False
        names = [*el.get("class", "").split(), el.get("id", "")]
        guess = (
            tag in _FURNITURE
            or el.get("role", "").lower() in _BOILERPLATE_ROLES
            or any(_BOILERPLATE_NAME.match(n) for n in names)
        )
        self.guessed = self.guessed or guess
        return guess
