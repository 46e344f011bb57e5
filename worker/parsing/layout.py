"""Reading order and paragraphs of one PDF page, from positioned text segments.

PDFium hands out a page's text as segments (runs of characters on one line, in
the order of the content stream) with their boxes. Most producers write a page
in reading order, but not all: some write two columns line by line across the
page. The page is cut recursively (XY-cut): at a vertical gutter that separates
text columns (left to right, right to left for RTL scripts), else at the widest
horizontal gap (top to bottom). A region that cannot be cut keeps the stream
order, which is right for everything that is not columns: tables, formulas,
footnote marks.

Plain data in, plain data out; coordinates are PDF points with y growing upwards.
"""

import itertools
import re
import statistics
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MIN_GUTTER = 7.0  # points of white between two text columns (LaTeX's default is 10)
MIN_COLUMN_LINES = 3
MIN_COLUMN_FILL = 0.6  # a text column's typical line spans most of its width (table cells do not)
MIN_COLUMN_SHARE = 0.18  # of the page width: narrower columns are table columns
ROW_GAP = 1.2  # × font size: a horizontal cut needs more white than between two lines
SOFT_HYPHEN = "\x02"  # PDFium's mark for a hyphen that breaks a word at the end of a line
LIST_MARK = re.compile(r"^([•◦▪▫●○■□‣⁃∙·*–-]|\(?[0-9]{1,3}[.)]|\(?[a-z][.)])\s")  # a bullet or number opening an item


@dataclass(frozen=True)
class Segment:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float = 0.0  # font size in points; 0 when unknown
    order: int = 0  # position in the content stream

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(frozen=True)
class Block:
    """A paragraph-like run of lines."""

    text: str
    size: float  # the font size of most of its characters
    lines: int


def reading_order(segments: list[Segment], page_width: float) -> list[list[Segment]]:
    """The page's regions in reading order, each a list of segments in stream order."""
    rtl = _mostly_rtl(segments)
    min_width = MIN_COLUMN_SHARE * page_width
    done: list[list[Segment]] = []
    todo = [segments]  # a stack: the last region pushed is the next one read
    while todo:
        region = todo.pop()
        parts = _columns(region, min_width) if len(region) > 1 else None
        if parts is not None and rtl:
            parts.reverse()
        if parts is None and len(region) > 1:
            parts = _rows(region)
        if parts is None:
            done.append(sorted(region, key=lambda s: s.order))
        else:
            todo.extend(reversed(parts))
    return done


def blocks(regions: Iterable[list[Segment]]) -> list[Block]:
    """Paragraphs: lines of a region are joined until a gap, an indent or a change of font size."""
    out: list[Block] = []
    for region in regions:
        lines = _lines(region)
        pitch = _typical_pitch(lines)
        current: list[_Line] = []
        for line in lines:
            if current and _breaks(current, line, pitch):
                out.append(_block(current))
                current = []
            current.append(line)
        if current:
            out.append(_block(current))
    return [b for b in out if b.text]


def _mostly_rtl(segments: list[Segment]) -> bool:
    rtl = ltr = 0
    for seg in segments[:50]:
        for ch in seg.text[:40]:
            bidi = unicodedata.bidirectional(ch)
            rtl += bidi in ("R", "AL")
            ltr += bidi == "L"
    return rtl > ltr


def _columns(region: list[Segment], min_width: float) -> list[list[Segment]] | None:
    """Split at the widest vertical gutter, if both sides are text columns."""
    ordered = sorted(region, key=lambda s: s.x0)
    best_gap, cut = 0.0, 0.0
    right = ordered[0].x1
    for seg in ordered[1:]:
        if seg.x0 - right > best_gap:
            best_gap, cut = seg.x0 - right, (seg.x0 + right) / 2
        right = max(right, seg.x1)
    if best_gap < MIN_GUTTER:
        return None
    left_part = [s for s in region if s.x1 <= cut]
    right_part = [s for s in region if s.x0 >= cut]
    if all(_is_text_column(part, min_width) for part in (left_part, right_part)):
        return [left_part, right_part]
    return None


def _is_text_column(part: list[Segment], min_width: float) -> bool:
    x0, x1 = min(s.x0 for s in part), max(s.x1 for s in part)
    width = x1 - x0
    if width < min_width:
        return False
    bands = _bands(part)
    if len(bands) < MIN_COLUMN_LINES:
        return False
    return statistics.median((b1 - b0) / width for b0, b1 in bands) >= MIN_COLUMN_FILL


def _bands(part: list[Segment]) -> list[tuple[float, float]]:
    """The x extent of each line (segments whose vertical centres fall within each other)."""
    bands: list[list[float]] = []  # [y0, y1, x0, x1]
    for seg in sorted(part, key=lambda s: -s.cy):
        if bands and bands[-1][0] <= seg.cy <= bands[-1][1]:
            band = bands[-1]
            band[2], band[3] = min(band[2], seg.x0), max(band[3], seg.x1)
        else:
            bands.append([seg.y0, seg.y1, seg.x0, seg.x1])
    return [(b[2], b[3]) for b in bands]


def _rows(region: list[Segment]) -> list[list[Segment]] | None:
    """Split at the widest horizontal gap, if it is wider than the space between lines."""
    ordered = sorted(region, key=lambda s: -s.y1)
    best_gap, cut = 0.0, 0.0
    bottom = ordered[0].y0
    for seg in ordered[1:]:
        if bottom - seg.y1 > best_gap:
            best_gap, cut = bottom - seg.y1, (bottom + seg.y1) / 2
        bottom = min(bottom, seg.y0)
    sizes = [s.size or (s.y1 - s.y0) for s in region]
    if best_gap < ROW_GAP * statistics.median(sizes):
        return None
    return [[s for s in region if s.y0 >= cut], [s for s in region if s.y1 <= cut]]


@dataclass
class _Line:
    segments: list[Segment]
    y0: float
    y1: float
    x0: float
    x1: float

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def size(self) -> float:
        return _dominant_size(self.segments)

    def text(self) -> str:
        parts: list[str] = []
        prev: Segment | None = None
        for seg in self.segments:
            if prev is not None:
                gap = seg.x0 - prev.x1
                if gap > 0.15 * (seg.size or (seg.y1 - seg.y0)) and not parts[-1].endswith((" ", SOFT_HYPHEN)):
                    parts.append(" ")
            parts.append(seg.text)
            prev = seg
        return "".join(parts).strip()


def _lines(region: list[Segment]) -> list[_Line]:
    lines: list[_Line] = []
    for seg in region:
        line = lines[-1] if lines else None
        same_line = (
            line is not None
            and (line.y0 <= seg.cy <= line.y1 or seg.y0 <= line.cy <= seg.y1)
            and seg.x0 >= line.segments[-1].x0
        )
        if same_line:
            line.segments.append(seg)
            line.y0, line.y1 = min(line.y0, seg.y0), max(line.y1, seg.y1)
            line.x0, line.x1 = min(line.x0, seg.x0), max(line.x1, seg.x1)
        else:
            lines.append(_Line([seg], seg.y0, seg.y1, seg.x0, seg.x1))
    return lines


def _typical_pitch(lines: list[_Line]) -> float | None:
    pitches = [a.cy - b.cy for a, b in itertools.pairwise(lines) if a.cy > b.cy]
    return statistics.median(pitches) if len(pitches) >= 3 else None


def _breaks(block: list[_Line], line: _Line, pitch: float | None) -> bool:
    prev = block[-1]
    size = max(prev.size, line.size) or (prev.y1 - prev.y0)
    first = block[0].text()
    if LIST_MARK.match(line.text()):  # each item of a list is its own block
        return True
    step = prev.cy - line.cy
    if step < -size / 2:  # back up the page: a new column or region in stream order
        return True
    if prev.size and line.size and abs(prev.size - line.size) > 0.15 * size:  # a heading, a footnote
        return True
    limit = max(pitch, size) * 1.35 if pitch else 1.8 * size  # more white than between two lines
    if step > limit:
        return True
    if LIST_MARK.match(first):  # the lines of a list item hang indented under its first
        return False
    return line.x0 - prev.x0 > 0.8 * size  # a first-line indent


def _block(lines: list[_Line]) -> Block:
    text = ""
    for line in lines:
        piece = line.text()
        if not text:
            text = piece
        elif text.endswith(SOFT_HYPHEN):
            text = text[:-1] + piece
        elif text.endswith("-") and piece[:1].islower() and text[-2:-1].isalpha():
            text = text[:-1] + piece  # "exam-" + "ple"
        else:
            text = f"{text} {piece}"
    text = _CONTROL.sub("", text.replace(SOFT_HYPHEN, ""))
    size = _dominant_size([s for line in lines for s in line.segments])
    return Block(text=_SPACES.sub(" ", text).strip(), size=size, lines=len(lines))


_CONTROL = re.compile(r"[\x00-\x1f\x7f\ufffe\uffff]")
_SPACES = re.compile(r"\s+")


def _dominant_size(segments: list[Segment]) -> float:
    weights: dict[float, int] = {}
    for seg in segments:
        if seg.size <= 0:
            continue
        key = round(seg.size * 2) / 2
        weights[key] = weights.get(key, 0) + len(seg.text)
    return max(weights, key=weights.__getitem__) if weights else 0.0
