"""Office packages as zip files: measured before they are unpacked (zip bombs), and broken ones."""

from pathlib import Path

import pytest

from app.intake import filetypes
from app.status import ErrorCode
from tests.fixtures.documents import make_docx, make_pptx, zip_bomb_docx
from tests.fixtures.parsing import parse_fails, read_elements


def test_zip_bomb_docx_fails_before_it_is_unpacked(tmp_path: Path) -> None:
    bomb = zip_bomb_docx(20)
    assert len(bomb) < 100_000
    err = parse_fails(tmp_path, "bomb.docx", bomb, filetypes.DOCX, max_decompressed_bytes=10 * 1024 * 1024)
    assert err.code == ErrorCode.ARCHIVE_TOO_LARGE and "zip bomb" in err.message
    # under the limit the same file is read
    els, _ = read_elements(tmp_path, "bomb.docx", bomb, filetypes.DOCX, max_decompressed_bytes=64 * 1024 * 1024)
    assert els[0].text == "Harbour Annual Report"


def test_zip_entry_that_unpacks_beyond_its_declared_size_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(make_docx())
    # the central directory understates what word/document.xml unpacks to: reading stops there, the CRC fails
    name = data.find(b"word/document.xml", data.find(b"PK\x01\x02"))
    entry = data.rfind(b"PK\x01\x02", 0, name)
    assert name == entry + 46
    data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
    err = parse_fails(tmp_path, "liar.docx", bytes(data), filetypes.DOCX)
    assert err.code == ErrorCode.DOCUMENT_CORRUPT


@pytest.mark.parametrize("content_type", [filetypes.DOCX, filetypes.PPTX])
def test_broken_office_files_fail_document_corrupt(tmp_path: Path, content_type: str) -> None:
    good, other = (make_docx(), make_pptx()) if content_type == filetypes.DOCX else (make_pptx(), make_docx())
    for data in (good[: len(good) // 2], b"PK\x03\x04 not really a zip", other):
        err = parse_fails(tmp_path, "broken", data, content_type)
        assert err.code == ErrorCode.DOCUMENT_CORRUPT, err
