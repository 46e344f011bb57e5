"""Supported file types, recognised by content (magic bytes and structure), then by name.

`sniff` sees only the first `SNIFF_BYTES` of a file. The content decides the
type; the name and the declared content type only choose among text formats
(plain, Markdown, CSV), and may not contradict the content: a DOCX named
`.pdf`, or a PDF sent as `text/plain`, is refused with `content_type_mismatch`.

The long tail (EML, MSG, EPUB, ODT, RTF, XLSX) is recognised only where the optional
unstructured extra can read it (`OPTIONAL`); elsewhere every file is typed as before. An
e-mail is told by its header block, unless a text name (.txt, .md ...) says otherwise; RTF by
`{\\rtf`, whatever its name; EPUB and ODT by their zip's `mimetype` entry; XLSX by `xl/`; an
Outlook message by the compound-file magic and its stream names (or a .msg name).
"""

import importlib.util
import re
import shutil
from pathlib import Path, PurePath

from app.status import ErrorCode

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
CSV = "text/csv"
HTML = "text/html"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
# The long tail, read by `unstructured` (worker/parsing/unstructured.py), an optional extra
# (requirements-unstructured.txt): supported only where what it needs is installed (`OPTIONAL`);
# elsewhere these stay unsupported, refused at upload like any unknown type.
EML = "message/rfc822"
MSG = "application/vnd.ms-outlook"
EPUB = "application/epub+zip"
ODT = "application/vnd.oasis.opendocument.text"
RTF = "application/rtf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

EXTENSIONS: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    DOCX: (".docx",),
    PPTX: (".pptx",),
    HTML: (".html", ".htm", ".xhtml"),
    MARKDOWN: (".md", ".markdown"),
    CSV: (".csv", ".tsv"),
    TEXT: (".txt", ".text", ".log"),
}


def _installed(modules: tuple[str, ...]) -> bool:
    """Whether the extra can read a type: its modules are importable (looked up, not imported)."""
    try:
        specs = [importlib.util.find_spec(m) for m in ("unstructured", "nltk", *modules)]
    except (ImportError, ValueError):
        return False
    # a leftover folder (caches after an uninstall) is a namespace package: no origin, not the extra
    found = all(spec is not None and spec.origin is not None for spec in specs)
    if found and "pypandoc" in modules:  # pandoc itself: pypandoc-binary's copy, or one on the PATH
        spec = importlib.util.find_spec("pypandoc")
        bundled = (Path(p) / "files" / "pandoc" for p in (spec.submodule_search_locations or ()) if spec)
        return any(p.is_file() for p in bundled) or shutil.which("pandoc") is not None
    return found


# type: (extensions, the modules its partitioner needs besides unstructured and nltk)
_LONG_TAIL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    EML: ((".eml",), ()),
    MSG: ((".msg",), ("oxmsg", "olefile")),
    EPUB: ((".epub",), ("pypandoc",)),
    ODT: ((".odt",), ("pypandoc", "docx")),
    RTF: ((".rtf",), ("pypandoc",)),
    XLSX: ((".xlsx",), ("openpyxl", "pandas")),
}
OPTIONAL = frozenset(ctype for ctype, (_, modules) in _LONG_TAIL.items() if _installed(modules))
EXTENSIONS.update((ctype, exts) for ctype, (exts, _) in _LONG_TAIL.items() if ctype in OPTIONAL)
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
_DECLARED.update(
    (declared, ctype)
    for declared, ctype in {
        "message/rfc822": EML,
        "application/vnd.ms-outlook": MSG,
        "application/epub+zip": EPUB,
        ODT: ODT,
        "application/rtf": RTF,
        "text/rtf": RTF,
        XLSX: XLSX,
    }.items()
    if ctype in OPTIONAL
)
# Types that are all text: naming one while sending another is no contradiction
# (an .html page saved as .txt is still HTML).
_TEXT_TYPES = frozenset({TEXT, MARKDOWN, CSV, HTML}) | (OPTIONAL & {EML, RTF})
# extensions that name a text type: among them the name, not e-mail headers, decides
_TEXT_EXTENSIONS = frozenset(EXTENSIONS[HTML] + EXTENSIONS[MARKDOWN] + EXTENSIONS[CSV] + EXTENSIONS[TEXT])
_BY_EXTENSION = {ext: ctype for ctype, exts in EXTENSIONS.items() for ext in exts}
_LABELS = {PDF: "PDF", DOCX: "DOCX", PPTX: "PPTX", HTML: "HTML", MARKDOWN: "Markdown", CSV: "CSV", TEXT: "text"}
_LABELS.update({EML: "e-mail", MSG: "Outlook message", EPUB: "EPUB", ODT: "ODT", RTF: "RTF", XLSX: "XLSX"})

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
    if MSG in OPTIONAL and _is_msg(head, ext):
        return MSG
    if _is_binary(head):
        return None
    if RTF in OPTIONAL and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):
        return RTF
    if _is_html(head) or ext in EXTENSIONS[HTML]:
        return HTML
    if EML in OPTIONAL and ext not in _TEXT_EXTENSIONS and _is_email(head, strict=ext != ".eml"):
        return EML
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
    if (mimetype := _zip_mimetype(head)) in OPTIONAL & {EPUB, ODT}:
        return mimetype
    names = zip_entry_names(head)
    for name in names:
        if name.startswith(b"word/"):
            return DOCX
        if name.startswith(b"ppt/"):
            return PPTX
        if name.startswith(b"xl/"):
            return XLSX if XLSX in OPTIONAL else None  # a spreadsheet: only with the unstructured extra
    if b"[Content_Types].xml" in names and _BY_EXTENSION.get(ext) in (DOCX, PPTX, XLSX):
        # an Office package whose main part lies beyond the first bytes: the parser will check it
        return _BY_EXTENSION[ext]
    return None


def _zip_mimetype(head: bytes) -> str:
    """The content of a `mimetype` first entry, stored uncompressed: how EPUB and OpenDocument say what they are."""
    if len(head) < 30 or head[8:10] != b"\x00\x00":  # compression method 0: stored
        return ""
    size, name_length, extra_length = (int.from_bytes(head[a:b], "little") for a, b in ((18, 22), (26, 28), (28, 30)))
    if head[30 : 30 + name_length] != b"mimetype":
        return ""
    start = 30 + name_length + extra_length
    end = start + size if size else head.find(b"PK", start)  # no size: a data descriptor follows the data
    return head[start : min(end, start + 100)].decode("ascii", "replace").strip()


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file: .msg, and also .doc, .xls, .ppt
_MSG_STREAMS = ("__substg1.0_".encode("utf-16-le"), "__properties_version1.0".encode("utf-16-le"))


def _is_msg(head: bytes, ext: str) -> bool:
    # the directory (stream names, UTF-16) is often but not always among the first sectors
    return head.startswith(_OLE2) and (ext == ".msg" or any(name in head for name in _MSG_STREAMS))


_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")  # RFC 5322: printable ASCII but the colon, then a colon
_MESSAGE_FIELDS = frozenset({b"date", b"subject", b"to", b"message-id", b"mime-version"})
_RELAY_FIELDS = frozenset({b"received", b"return-path", b"delivered-to"})


def _is_email(head: bytes, strict: bool) -> bool:
    """Whether the text starts with a block of RFC 822 header fields.

    Named .eml, any well-formed block will do; otherwise (no extension, one we do not know)
    it must look like a message: From with Date, Subject, To ..., or relay fields.
    """
    lines = head.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:-1]  # the last line may be cut short
    if lines and lines[0].startswith(b"From "):  # an mbox separator line
        lines = lines[1:]
    names: set[bytes] = set()
    for line in lines:
        line = line.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):  # a folded field continues
            if not names:
                return False
            continue
        if (match := _HEADER_FIELD.match(line)) is None:
            return False
        names.add(match.group()[:-1].lower())
    if not names:
        return False
    if not strict:
        return True
    return bool((b"from" in names and names & _MESSAGE_FIELDS) or names & _RELAY_FIELDS)


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
