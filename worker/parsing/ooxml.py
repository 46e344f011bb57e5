"""What DOCX and PPTX share: they are zip packages, and a zip can be a bomb.

python-docx and python-pptx read every part of a package into memory, so the
package is measured before they open it: the sizes its directory declares for
its entries, summed, against `max_decompressed_bytes`. A declared size cannot be
exceeded (Python's zipfile stops an entry there and fails its checksum).
"""

import zipfile
from pathlib import Path
from zipfile import BadZipFile

from lxml.etree import XMLSyntaxError

from app.settings import Settings
from app.status import ErrorCode, PipelineError

MAX_ENTRIES = 10_000

# What python-docx and python-pptx raise for a package that is damaged or not what it claims.
CORRUPT = (BadZipFile, KeyError, ValueError, XMLSyntaxError, EOFError, zipfile.LargeZipFile)


def check_archive(path: Path, settings: Settings, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (BadZipFile, EOFError, ValueError) as exc:
        message = f"The {label} is damaged: it is not a valid zip package."
        raise PipelineError(ErrorCode.DOCUMENT_CORRUPT, message) from exc
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > settings.max_decompressed_bytes or len(entries) > MAX_ENTRIES:
        raise PipelineError(
            ErrorCode.ARCHIVE_TOO_LARGE,
            f"The {label} unpacks to {unpacked:,} bytes in {len(entries):,} parts; at most "
            f"{settings.max_decompressed_bytes:,} bytes (MAX_DECOMPRESSED_BYTES) and {MAX_ENTRIES:,} parts are "
            "allowed. It may be a zip bomb.",
        )


def corrupt(label: str, exc: BaseException) -> PipelineError:
    return PipelineError(ErrorCode.DOCUMENT_CORRUPT, f"The {label} could not be read ({type(exc).__name__}: {exc}).")
