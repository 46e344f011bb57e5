"""Plain text: encodings, the character limit on one huge line, and binary data named .txt."""

from pathlib import Path

from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode
from tests.fixtures.parsing import parse_fails, write_file
from worker.parsing import MAX_ELEMENT_CHARS, parse


def test_text_encodings(tmp_path: Path) -> None:
    french = (
        "Le comité a approuvé la création d'une piste cyclable près du marché. Les élèves de l'école "
        "ont présenté leurs idées à la mairie, et le maire a répondu favorablement. Cette décision sera "
        "mise en œuvre dès l'été prochain."
    )
    path = write_file(tmp_path, "l.txt", french.encode("cp1252"))
    text = " ".join(e.text for e in parse(path, filetypes.TEXT).elements)
    assert text == french
    path = write_file(tmp_path, "u.txt", "\ufeff".encode() + french.encode())  # UTF-8 with a BOM
    assert " ".join(e.text for e in parse(path, filetypes.TEXT).elements) == french


def test_single_line_50_mb_text_fails_or_truncates_fast(tmp_path: Path) -> None:
    data = b"tide " * (10 * 1024 * 1024)  # 50 MB, no line break
    err = parse_fails(tmp_path, "one-line.txt", data, filetypes.TEXT)
    assert err.code == ErrorCode.TOO_MANY_CHARACTERS and "10,000,000" in err.message
    parsed = parse(write_file(tmp_path, "one-line.txt", data), filetypes.TEXT, Settings(limit_mode="truncate"))
    sizes = [len(e.text) for e in parsed.elements]
    assert max(sizes) <= MAX_ELEMENT_CHARS and sum(sizes) <= 10_000_000
    assert parsed.stats["characters"] == sum(sizes) > 9_900_000 and parsed.stats["characters_truncated"] == 1


def test_binary_garbage_named_txt_fails_text_undecodable(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    no_nul = bytes(rng.randrange(128, 256) for _ in range(20_000))  # passes the upload's binary check
    err = parse_fails(tmp_path, "garbage.txt", no_nul, filetypes.TEXT)
    assert err.code == ErrorCode.TEXT_UNDECODABLE
    # valid UTF-8, but control characters throughout: binary data, not text
    err = parse_fails(tmp_path, "controls.txt", bytes(rng.randrange(0, 32) for _ in range(20_000)), filetypes.TEXT)
    assert err.code == ErrorCode.TEXT_UNDECODABLE
