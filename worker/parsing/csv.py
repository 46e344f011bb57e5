"""CSV and TSV in any encoding: one table element per row, cells joined with " | ".

The delimiter (`,` `;` tab `|`) is the one whose count outside double quotes is the most
consistent over the first lines; the quote character is always `"`.
"""

import csv
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed, clean_spaces, windows
from worker.parsing.text import decode, lines

DELIMITERS = ",\t;|"  # in order of preference when two are equally consistent
SAMPLE_LINES = 50
SAMPLE_CHARS = 16384
MAX_LINE = 1_000_000  # characters; longer lines are cut into rows of this size

# A cell may be as long as a line (the csv module's default stops at 128 KB). Process-wide,
# and only ever raised.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))


def parse(path: Path, settings: Settings) -> Parsed:
    return Parsed(elements=_rows(decode(path.read_bytes())))


class _Dialect(csv.excel):
    # a space before a quoted cell (`a, "b, c"`) does not make the quote part of the cell
    skipinitialspace = True


def _sample(text: str) -> str:
    """The first SAMPLE_LINES lines of `text`, at most SAMPLE_CHARS characters: enough to see
    the delimiter, and a bound on what judging it costs."""
    head = text[:SAMPLE_CHARS]
    if len(text) > SAMPLE_CHARS:  # the last line of the sample is probably cut short
        head = head[: head.rfind("\n") + 1] or head
    return "".join(islice(lines(head), SAMPLE_LINES))


def _delimiter_counts(sample: str, delimiter: str) -> list[int]:
    """Per record of `sample`, how many times `delimiter` separates cells (quoted cells, line
    breaks inside them included, are read as the parse will read them); blank lines left out.

    The csv module's reader reads each character once; csv.Sniffer's regular expressions
    backtrack on crafted input (10 s of CPU for 64 KB of `"a,`, longer for worse), holding
    the GIL the worker's heartbeat thread needs.
    """
    reader = csv.reader(lines(sample), _Dialect, delimiter=delimiter)
    try:
        return [len(row) - 1 for row in reader if row]
    except csv.Error:
        return []


def _consistency(counts: list[int]) -> float:
    """The share of records with the most common count, or 0 if that count is 0 (the delimiter
    is in too few lines to separate cells). A tie goes to the larger count."""
    if not counts:
        return 0.0
    common, records = max(Counter(counts).items(), key=lambda item: (item[1], item[0]))
    return records / len(counts) if common else 0.0


def _dialect(text: str) -> type[csv.Dialect]:
    """The dialect to read `text` with, judged from its first lines in time linear in them.

    With no delimiter consistent at all: tab if the sample has more tabs than commas, else
    comma.
    """
    sample = _sample(text)
    scores = {d: _consistency(_delimiter_counts(sample, d)) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: scores[d])  # the first of the best, in order of preference
    if scores[best] == 0:
        best = "\t" if sample.count("\t") > sample.count(",") else ","
    return type("_Detected", (_Dialect,), {"delimiter": best})


def _bounded_lines(text: str) -> Iterator[str]:
    # a line of megabytes is no row anyone meant, and would cost four times its size in the
    # csv module's buffers
    for line in lines(text):
        if len(line) <= MAX_LINE:
            yield line
        else:
            yield from (piece + "\n" for piece in windows(line.rstrip("\r\n"), MAX_LINE))


def _rows(text: str) -> Iterator[Element]:
    reader = csv.reader(_bounded_lines(text), _dialect(text))
    try:
        for row in reader:
            cells = [clean_spaces(cell) for cell in row]
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                yield Element(text=" | ".join(cells), kind="table")
    except csv.Error as exc:
        raise PipelineError(ErrorCode.DOCUMENT_CORRUPT, f"The CSV could not be read ({exc}).") from exc
