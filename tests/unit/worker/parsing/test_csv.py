"""CSV: rows in any encoding and delimiter, and the dialect found fast on input that stalls csv.Sniffer."""

import csv
import io
import time
from pathlib import Path

import pytest

from app.intake import filetypes
from tests.fixtures.parsing import read_elements
from worker.parsing import Element


def test_csv_rows_in_any_encoding_and_delimiter(tmp_path: Path) -> None:
    data = "Stadt;Einwohner\nMünchen;1 500 000\n\nKöln;1 080 000\n".encode("cp1252")
    els, _ = read_elements(tmp_path, "cities.csv", data, filetypes.CSV)
    assert els == [
        Element("Stadt | Einwohner", "table"),
        Element("München | 1 500 000", "table"),
        Element("Köln | 1 080 000", "table"),
    ]
    els, _ = read_elements(tmp_path, "t.tsv", b'a\tb\n"quoted, with comma"\t2\n', filetypes.CSV)
    assert [e.text for e in els] == ["a | b", "quoted, with comma | 2"]
    els, _ = read_elements(tmp_path, "spaced.csv", b'a, "b, c", d\n1, "2, 3", 4\n', filetypes.CSV)
    assert [e.text for e in els] == ["a | b, c | d", "1 | 2, 3 | 4"]  # a space before the quote


# Quotes and delimiters that make csv.Sniffer's regexes backtrack: about 4 s of CPU for these
# 30 KB (10 s for the 64 KB it was given before), holding the GIL the worker's heartbeat needs.
SNIFFER_TRAP = '"a,' * 10_000


def test_csv_dialect_detection_is_fast_on_input_that_stalls_the_sniffer() -> None:
    from worker.parsing.csv import _dialect

    start = time.process_time()
    _dialect(SNIFFER_TRAP)
    assert time.process_time() - start < 0.5


def test_csv_file_that_stalls_the_sniffer_parses_fast(tmp_path: Path) -> None:
    start = time.process_time()
    els, _ = read_elements(tmp_path, "trap.csv", f"name,note\n{SNIFFER_TRAP}\n".encode(), filetypes.CSV)
    assert time.process_time() - start < 1.0
    assert els[0].text == "name | note"  # then the long row, in pieces of MAX_ELEMENT_CHARS
    assert len(els) > 1 and {e.kind for e in els} == {"table"} and set(els[1].text) == set("a,| ")


# each note holds the other delimiters, often more of them than the file's own, and line breaks
CSV_ROWS = [
    ["name", "note", "amount"],
    ["Ames", "one, two, three; four; five\tsix\tseven | eight | nine", "1"],
    ["Bo", "first line,,,\nsecond line;;;\t\t|||", "2"],
    ["Cy", "plain", "3"],
    ["Di", ",;\t|", "4"],
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_delimiter_found_when_quoted_fields_hold_the_others(tmp_path: Path, delimiter: str) -> None:
    from worker.parsing.csv import _dialect

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_NONNUMERIC).writerows(CSV_ROWS)
    assert _dialect(out.getvalue()).delimiter == delimiter
    els, _ = read_elements(tmp_path, "notes.csv", out.getvalue().encode(), filetypes.CSV)
    assert [e.text for e in els] == [" | ".join(" ".join(cell.split()) for cell in row) for row in CSV_ROWS]


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("id;price\n1;2,50\n2;3,75\n3;10\n", ";"),  # decimal commas in some rows
        ("a|b|c\n1|2|3\n", "|"),
        ("a\tb\n1\t2, or so\n", "\t"),
        ('a,b\n1,2\n3,"4; 5; 6"\n', ","),
        ('a, "b, c", d\n1, "2, 3", 4\n', ","),  # a space before the quote
        ("one column\nno delimiter at all\n", ","),  # nothing consistent: comma, as csv.excel
        ("one column\twith a tab\nand none\nhere\n", "\t"),  # more tabs than commas: tab
    ],
)
def test_csv_delimiter_by_consistent_counts_outside_quotes(sample: str, delimiter: str) -> None:
    from worker.parsing.csv import _dialect

    assert _dialect(sample).delimiter == delimiter
