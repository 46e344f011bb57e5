"""Pipeline stages as plain functions: parsers and the chunker, no servers."""

from pathlib import Path

import pytest

from app.embedding.embedder import MAX_TOKENS, load_tokenizer, model_dir
from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from tests.helpers import make_pdf
from worker.chunking import Chunker
from worker.parsing import Element, parse


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(model_dir(Settings()))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_sniff_by_content_then_name() -> None:
    assert filetypes.sniff(b"%PDF-1.7 ...", "report.pdf") == filetypes.PDF
    assert filetypes.sniff(b"%PDF-1.7 ...", "report") == filetypes.PDF  # no name needed
    with pytest.raises(filetypes.ContentTypeMismatch):  # content and name disagree
        filetypes.sniff(b"%PDF-1.7 ...", "report.txt")
    assert filetypes.sniff(b"# Title", "notes.md") == filetypes.MARKDOWN
    assert filetypes.sniff(b"hello", "notes.txt") == filetypes.TEXT
    assert filetypes.sniff(b"\x89PNG\r\n\x1a\n\x00\x00", "image.png") is None
    assert filetypes.sniff(b"MZ\x90\x00\x03", "setup.txt") is None  # binary named .txt
    assert filetypes.sniff(b"<html>", "page.html") == filetypes.HTML
    assert filetypes.sniff(b"hello", "notes.json") is None  # text, but not a type we parse


def test_pdf_pages_keep_their_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.pdf", make_pdf(["First page text.", "Second page text.", ""]))
    parsed = parse(path, filetypes.PDF)
    assert parsed.page_count == 3
    els = list(parsed.elements)
    assert [(e.text, e.page) for e in els] == [("First page text.", 1), ("Second page text.", 2)]


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"%PDF-1.4\ngarbage", ErrorCode.PDF_CORRUPT), (b"%PDF-1.7\n" + b"\x00" * 64, ErrorCode.PDF_CORRUPT)],
)
def test_bad_pdfs_raise_their_code(tmp_path: Path, data: bytes, code: ErrorCode) -> None:
    with pytest.raises(PipelineError) as info:
        list(parse(_write(tmp_path, "bad.pdf", data), filetypes.PDF).elements)
    assert info.value.code == code


def test_text_encodings(tmp_path: Path) -> None:
    french = (
        "Le comité a approuvé la création d'une piste cyclable près du marché. Les élèves de l'école "
        "ont présenté leurs idées à la mairie, et le maire a répondu favorablement. Cette décision sera "
        "mise en œuvre dès l'été prochain."
    )
    path = _write(tmp_path, "l.txt", french.encode("cp1252"))
    text = " ".join(e.text for e in parse(path, filetypes.TEXT).elements)
    assert text == french
    path = _write(tmp_path, "u.txt", "\ufeff".encode() + french.encode())  # UTF-8 with a BOM
    assert " ".join(e.text for e in parse(path, filetypes.TEXT).elements) == french


def test_markdown_heading_paths_and_kinds(tmp_path: Path) -> None:
    md = b"# Manual\n\nIntro text.\n\n## Install\n\n1. unpack\n2. run\n\n## Use\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    els = list(parse(_write(tmp_path, "m.md", md), filetypes.MARKDOWN).elements)
    assert els[0] == Element("Manual", "title", None, ("Manual",))
    assert Element("Intro text.", "paragraph", None, ("Manual",)) in els
    assert Element("unpack", "list", None, ("Manual", "Install")) in els
    assert [e.text for e in els if e.kind == "table"] == ["a | b", "1 | 2"]


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


# --- headings are text: never dropped ------------------------------------------------------------


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
    chunks = Chunker(tokenizer).chunk(parse(_write(tmp_path, "h.md", md), filetypes.MARKDOWN).elements)
    assert chunks and "\n".join(c.text for c in chunks) == "Release notes\nVersion 2.1\nVersion 2.0\nKnown issues"


def test_markdown_trailing_headings_are_indexed(tmp_path: Path, tokenizer) -> None:
    md = b"# Manual\n\nThe pump starts when the float rises.\n\n## Appendix\n\n### Wiring diagrams\n"
    chunks = Chunker(tokenizer).chunk(parse(_write(tmp_path, "t.md", md), filetypes.MARKDOWN).elements)
    assert any("The pump starts" in c.text for c in chunks)
    assert any("Wiring diagrams" in c.text for c in chunks)
