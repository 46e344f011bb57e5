"""CSV and TSV in any encoding: one table element per row, cells joined with " | "."""

import csv
from collections.abc import Iterator
from pathlib import Path

from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed, clean_spaces, windows
from worker.parsing.text import decode, lines

_SAMPLE = 65536
MAX_LINE = 1_000_000  # characters; longer lines are cut into rows of this size

# A cell may be as long as a line (the csv module's default stops at 128 KB). Process-wide,
# and only ever raised.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))


def parse(path: Path, settings: Settings) -> Parsed:
    return Parsed(elements=_rows(decode(path.read_bytes())))


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel


def _bounded_lines(text: str) -> Iterator[str]:
    # a line of megabytes is no row anyone meant, and would cost four times its size in the
    # csv module's buffers
    for line in lines(text):
        if len(line) <= MAX_LINE:
            yield line
        else:
            yield from (piece + "\n" for piece in windows(line.rstrip("\r\n"), MAX_LINE))


def _rows(text: str) -> Iterator[Element]:
    sample = text[:_SAMPLE]
    if len(text) > _SAMPLE:  # the last line of the sample is probably cut short
        sample = sample[: sample.rfind("\n") + 1] or sample
    reader = csv.reader(_bounded_lines(text), _dialect(sample))
    try:
        for row in reader:
            cells = [clean_spaces(cell) for cell in row]
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                yield Element(text=" | ".join(cells), kind="table")
    except csv.Error as exc:
        raise PipelineError(ErrorCode.DOCUMENT_CORRUPT, f"The CSV could not be read ({exc}).") from exc
