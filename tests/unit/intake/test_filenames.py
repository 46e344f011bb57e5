"""Client-supplied filenames never become unsanitised path components (the rules; the upload is in
tests/integration/api/test_uploads.py)."""

import pytest

from app.intake.filenames import MAX_NAME_CHARS, display_name, safe_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("a\x00b.txt", "ab.txt"),
        ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ("..", "file"),
        ("", "file"),
        ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),  # fullwidth "../" folds to ASCII under NFKC
        ("résumé 2024.pdf", "résumé 2024.pdf"),
        ("a;rm -rf $HOME.txt", "a_rm -rf _HOME.txt"),
    ],
)
def test_safe_name(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


def test_safe_name_bounds_length_and_keeps_extension() -> None:
    name = safe_name("x" * 300 + ".pdf")
    assert len(name) <= MAX_NAME_CHARS and name.endswith(".pdf")


def test_display_name_drops_control_characters() -> None:
    assert display_name("nul\x00byte\u202e.txt") == "nulbyte.txt"
    assert display_name("../../etc/passwd") == "../../etc/passwd"  # shown as given, never used as a path
    assert len(display_name("y" * 1000)) == 255
