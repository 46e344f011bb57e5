"""Client-supplied filenames never become unsanitised path components."""

from pathlib import Path

import httpx
import pytest

from app.intake.filenames import MAX_NAME_CHARS, display_name, safe_name
from tests.helpers import run_worker, wait_final


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


def _raw_upload(client: httpx.Client, filename: bytes, data: bytes) -> httpx.Response:
    """A multipart body written by hand, so the filename bytes reach the server as they are."""
    boundary = b"hostileboundary1234"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return client.post(
        "/upload", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"}
    )


@pytest.mark.parametrize(
    "filename",
    [
        b"../../etc/passwd",
        b"..%2F..%2Fescape.txt",
        b"nul\x00byte.txt",
        b"x" * 300 + b".txt",
        "ｕｎｉｃｏｄｅ／．．／trick.txt".encode(),
        "\u202egnp.txt".encode(),
        b"/absolute/path.txt",
    ],
)
def test_hostile_filenames_stay_inside_the_upload_dir(client: httpx.Client, data_dir: Path, filename: bytes) -> None:
    r = _raw_upload(client, filename, b"Harmless text about hostile names and safe storage: " + filename.hex().encode())
    assert r.status_code == 202, r.text
    fid = r.json()["files"][0]["file_id"]
    stored = list((data_dir / "uploads" / fid).iterdir())
    assert len(stored) == 1
    path = stored[0].resolve()
    assert path.parent == (data_dir / "uploads" / fid).resolve()
    assert len(path.name) <= MAX_NAME_CHARS and "\x00" not in path.name and ".." not in path.name
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "embedded" and "\x00" not in doc["filename"]
    assert not Path("/etc/passwd.txt").exists()
