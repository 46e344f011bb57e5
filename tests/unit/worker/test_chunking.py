"""The chunker: token-bounded windows with overlap, headings that lead their body, pages that span, and
headings never dropped."""

from pathlib import Path

import pytest

from app.embedding.embedder import MAX_TOKENS, load_tokenizer, model_dir
from app.intake import filetypes
from app.settings import Settings
from tests.fixtures.parsing import write_file
from worker.chunking import Chunker
from worker.parsing import Element, parse


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(model_dir(Settings()))


def test_chunks_fit_the_model_and_overlap(tokenizer) -> None:
    words = " ".join(f"token{i}" for i in range(3000))
    chunker = Chunker(tokenizer, max_tokens=MAX_TOKENS, overlap_tokens=32)
    chunks = chunker.chunk([Element(words, "paragraph", page=4)])
    assert len(chunks) > 3
    for c in chunks:
        assert len(tokenizer.encode(c.text).ids) <= MAX_TOKENS  # with [CLS] and [SEP]
        assert c.page_start == c.page_end == 4
    # consecutive windows share their boundary text
    assert chunks[0].text[-20:] in chunks[1].text


def test_headings_start_new_chunks_and_paragraphs_pack(tokenizer) -> None:
    els = [
        Element("Guide", "title", None, ("Guide",)),
        Element("Short intro.", "paragraph", None, ("Guide",)),
        Element("Setup", "heading", None, ("Guide", "Setup")),
        Element("Step one.", "list", None, ("Guide", "Setup")),
        Element("Step two.", "list", None, ("Guide", "Setup")),
    ]
    chunks = Chunker(tokenizer).chunk(els)
    assert [c.text for c in chunks] == ["Guide\nShort intro.", "Setup\nStep one.\nStep two."]
    assert chunks[1].heading_path == ("Guide", "Setup") and chunks[1].kinds == ("heading", "list")


def test_pages_span_when_paragraphs_pack(tokenizer) -> None:
    els = [Element(f"Page {p} sentence.", "paragraph", page=p) for p in (1, 2, 3)]
    (chunk,) = Chunker(tokenizer).chunk(els)
    assert (chunk.page_start, chunk.page_end) == (1, 3)


def test_no_elements_no_chunks(tokenizer) -> None:
    assert Chunker(tokenizer).chunk([Element("   ", "paragraph")]) == []


def _heading(text: str, *path: str) -> Element:
    return Element(text, "title" if len(path) == 1 else "heading", None, path)


def test_document_of_only_headings_gives_chunks(tokenizer) -> None:
    els = [_heading("Guide", "Guide"), _heading("Setup", "Guide", "Setup"), _heading("Use", "Guide", "Use")]
    (chunk,) = Chunker(tokenizer).chunk(els)
    assert chunk.text == "Guide\nSetup\nUse"
    assert chunk.kinds == ("title", "heading") and chunk.heading_path == ("Guide", "Use")


def test_trailing_headings_are_a_chunk_of_their_own(tokenizer) -> None:
    els = [
        _heading("Guide", "Guide"),
        Element("Short intro.", "paragraph", None, ("Guide",)),
        _heading("Appendix", "Guide", "Appendix"),
        _heading("Notes", "Guide", "Appendix", "Notes"),
    ]
    chunks = Chunker(tokenizer).chunk(els)
    assert [c.text for c in chunks] == ["Guide\nShort intro.", "Appendix\nNotes"]
    assert chunks[1].kinds == ("heading",) and chunks[1].heading_path == ("Guide", "Appendix", "Notes")


def test_waiting_heading_still_leads_when_the_heading_path_changes(tokenizer) -> None:
    # the body's path differs from its heading's, as when a heading in between had no text
    els = [
        Element("Intro text.", "paragraph", None, ("Guide",)),
        _heading("Setup", "Guide", "Setup"),
        Element("Step one.", "list", None, ("Guide", "Setup", "Linux")),
    ]
    chunks = Chunker(tokenizer).chunk(els)
    assert [c.text for c in chunks] == ["Intro text.", "Setup\nStep one."]
    assert chunks[1].heading_path == ("Guide", "Setup", "Linux") and chunks[1].kinds == ("heading", "list")


def test_heading_kept_before_a_body_too_long_to_join_it(tokenizer) -> None:
    chunker = Chunker(tokenizer, max_tokens=34, overlap_tokens=4)  # 32 word pieces a chunk
    filler = " ".join(f"w{i}" for i in range(40))  # more than a chunk: cut into windows
    fits_alone = " ".join(["tide"] * 32)  # fits a chunk, but not with its heading
    for body in (filler, fits_alone):
        els = [_heading("Setup", "Guide", "Setup"), Element(body, "paragraph", None, ("Guide", "Setup"))]
        chunks = chunker.chunk(els)
        assert chunks[0].text == "Setup" and chunks[0].kinds == ("heading",)
        assert len(chunks) > 1 and all(c.kinds == ("paragraph",) for c in chunks[1:])


def test_headings_beyond_one_chunk_are_all_kept(tokenizer) -> None:
    names = [f"Section {i}" for i in range(30)]
    chunks = Chunker(tokenizer, max_tokens=34).chunk([_heading(n, "Guide", n) for n in names])
    assert len(chunks) > 1 and "\n".join(c.text for c in chunks).split("\n") == names


def test_markdown_of_only_headings_is_indexed(tmp_path: Path, tokenizer) -> None:
    md = b"# Release notes\n\n## Version 2.1\n\n## Version 2.0\n\n### Known issues\n"
    chunks = Chunker(tokenizer).chunk(parse(write_file(tmp_path, "h.md", md), filetypes.MARKDOWN).elements)
    assert chunks and "\n".join(c.text for c in chunks) == "Release notes\nVersion 2.1\nVersion 2.0\nKnown issues"


def test_markdown_trailing_headings_are_indexed(tmp_path: Path, tokenizer) -> None:
    md = b"# Manual\n\nThe pump starts when the float rises.\n\n## Appendix\n\n### Wiring diagrams\n"
    chunks = Chunker(tokenizer).chunk(parse(write_file(tmp_path, "t.md", md), filetypes.MARKDOWN).elements)
    assert any("The pump starts" in c.text for c in chunks)
    assert any("Wiring diagrams" in c.text for c in chunks)
