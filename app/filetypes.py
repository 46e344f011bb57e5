"""Supported file types, recognised by content (magic bytes) and name."""

from pathlib import PurePath

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"

EXTENSIONS: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    TEXT: (".txt", ".text", ".log", ".csv"),
    MARKDOWN: (".md", ".markdown"),
}
SUPPORTED = tuple(EXTENSIONS)
SNIFF_BYTES = 8192  # how much of the start of a file `sniff` wants to see


def sniff(head: bytes, filename: str) -> str | None:
    """The content type of a file from its first bytes and its name; None if unsupported.

    Content wins over the name: a PDF is a PDF whatever it is called. Text types
    are told apart by extension, and only if the bytes look like text.
    """
    if b"%PDF-" in head[:1024]:
        return PDF
    ext = PurePath(filename.lower()).suffix
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):  # binary, unless UTF-16
        return None
    if ext in EXTENSIONS[MARKDOWN]:
        return MARKDOWN
    if ext in EXTENSIONS[TEXT] or ext == "":
        return TEXT
    return None
