"""Markdown: element kinds and heading paths."""

from pathlib import Path

from app.intake import filetypes
from tests.fixtures.parsing import write_file
from worker.parsing import Element, parse


def test_markdown_heading_paths_and_kinds(tmp_path: Path) -> None:
    md = b"# Manual\n\nIntro text.\n\n## Install\n\n1. unpack\n2. run\n\n## Use\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    els = list(parse(write_file(tmp_path, "m.md", md), filetypes.MARKDOWN).elements)
    assert els[0] == Element("Manual", "title", None, ("Manual",))
    assert Element("Intro text.", "paragraph", None, ("Manual",)) in els
    assert Element("unpack", "list", None, ("Manual", "Install")) in els
    assert [e.text for e in els if e.kind == "table"] == ["a | b", "1 | 2"]
