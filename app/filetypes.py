"""Supported file types, recognised by content (magic bytes and structure), then by name.

`sniff` sees only the first `SNIFF_BYTES` of a file. The content decides the
type; the name and the declared content type only choose among text formats
(plain, Markdown, CSV), and may not contradict the content: a DOCX named
`.pdf`, or a PDF sent as `text/plain`, is refused with `content_type_mismatch`.
"""

import re
from pathlib import PurePath

from app.status import ErrorCode

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
CSV = "text/csv"
HTML = "text/html"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

EXTENSIONS: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    DOCX: (".docx",),
    PPTX: (".pptx",),
    HTML: (".html", ".htm", ".xhtml"),
    MARKDOWN: (".md", ".markdown"),
    CSV: (".csv", ".tsv"),
    TEXT: (".txt", ".text", ".log"),
}
SUPPORTED = tuple(EXTENSIONS)
SNIFF_BYTES = 8192  # how much of the start of a file `sniff` wants to see

# Content types a client may declare, mapped to ours. Generic ones (application/octet-stream)
# and ones we do not know (application/zip for a DOCX, image/png ...) claim nothing.
_DECLARED: dict[str, str] = {
    "application/pdf": PDF,
    "application/x-pdf": PDF,
    DOCX: DOCX,
    PPTX: PPTX,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "text/markdown": MARKDOWN,
    "text/x-markdown": MARKDOWN,
    "text/csv": CSV,
    "application/csv": CSV,
    "text/tab-separated-values": CSV,
    "text/plain": TEXT,
}
# Types that are all text: naming one while sending another is no contradiction
# (an .html page saved as .txt is still HTML).
_TEXT_TYPES = frozenset({TEXT, MARKDOWN, CSV, HTML})
_BY_EXTENSION = {ext: ctype for ctype, exts in EXTENSIONS.items() for ext in exts}
_LABELS = {PDF: "PDF", DOCX: "DOCX", PPTX: "PPTX", HTML: "HTML", MARKDOWN: "Markdown", CSV: "CSV", TEXT: "text"}

_PDF_HEADER = re.compile(rb"%PDF-\d\.\d")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# C0 controls that do not occur in text files (tab, newlines, form feed and ESC do)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x0b\x0c\x1b") + b"\x7f"


class ContentTypeMismatch(ValueError):
    """The name or the declared content type says one type, the content another (HTTP 415)."""

    code = ErrorCode.CONTENT_TYPE_MISMATCH

    def __init__(self, filename: str, claimed: str, detected: str) -> None:
        self.claimed, self.detected = claimed, detected
        self.message = (
            f"{filename!r} is declared as {_LABELS[claimed]} ({claimed}) but its content is "
            f"{_LABELS[detected]} ({detected}). Rename it or send the right file."
        )
        super().__init__(self.message)


def sniff(head: bytes, filename: str, declared: str | None = None) -> str | None:
    """The content type of a file from its first bytes; None if the content is not supported.

    `declared` is the client's content type for the file, if any. Raises
    `ContentTypeMismatch` when the extension or `declared` names a supported type
    that the content contradicts.
    """
    ext = PurePath(filename.lower()).suffix
    detected = _detect(head, ext)
    if detected is None:
        return None
    for claimed in (_BY_EXTENSION.get(ext), _declared_type(declared)):
        if claimed is not None and claimed != detected and not {claimed, detected} <= _TEXT_TYPES:
            raise ContentTypeMismatch(filename, claimed, detected)
    return detected


def _declared_type(declared: str | None) -> str | None:
    if not declared:
        return None
    return _DECLARED.get(declared.split(";", 1)[0].strip().lower())


def _detect(head: bytes, ext: str) -> str | None:
    if _is_pdf(head):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return _office_type(head, ext)
    if _is_binary(head):
        return None
    if _is_html(head) or ext in EXTENSIONS[HTML]:
        return HTML
    if ext in EXTENSIONS[MARKDOWN]:
        return MARKDOWN
    if ext in EXTENSIONS[CSV]:
        return CSV
    if ext in EXTENSIONS[TEXT] or ext == "" or ext in _BY_EXTENSION:
        return TEXT  # text named .pdf or .docx is text, which then contradicts its name
    return None


def zip_entry_names(head: bytes) -> list[bytes]:
    """Names in the local file headers found in the first bytes of a zip archive.

    Office files put `[Content_Types].xml` and the main part's folder (`word/`,
    `ppt/`, `xl/`) among the first entries, so the start of the file is enough.
    """
    names = []
    pos = head.find(b"PK\x03\x04")
    while pos != -1 and pos + 30 <= len(head):
        length = int.from_bytes(head[pos + 26 : pos + 28], "little")
        names.append(head[pos + 30 : pos + 30 + length])
        pos = head.find(b"PK\x03\x04", pos + 30)
    return names


def _office_type(head: bytes, ext: str) -> str | None:
    names = zip_entry_names(head)
    for name in names:
        if name.startswith(b"word/"):
            return DOCX
        if name.startswith(b"ppt/"):
            return PPTX
        if name.startswith(b"xl/"):
            return None  # a spreadsheet: not supported (yet)
    if b"[Content_Types].xml" in names and _BY_EXTENSION.get(ext) in (DOCX, PPTX):
        # an Office package whose main part lies beyond the first bytes: the parser will check it
        return _BY_EXTENSION[ext]
    return None


def _is_binary(head: bytes) -> bool:
    if head.startswith(_BOMS):  # UTF-16 text is full of NUL bytes
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > len(head) // 50


def _is_pdf(head: bytes) -> bool:
    # Readers accept up to 1 KB of junk before the header (a MacBinary header, stray
    # whitespace); text that merely mentions "%PDF-1.4" is not a PDF.
    match = _PDF_HEADER.search(head, 0, 1024)
    if match is None:
        return False
    junk = head[: match.start()]
    return not junk.strip() or _is_binary(junk)


def _is_html(head: bytes) -> bool:
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith(b"<?xml"):  # XHTML
        return b"<html" in start
    while start.startswith(b"<!--"):  # a leading comment
        end = start.find(b"-->")
        if end == -1:
            return False
        start = start[end + 3 :].lstrip()
    return start.startswith((b"<!doctype html", b"<html"))
