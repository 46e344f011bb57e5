"""Client-supplied filenames: one form safe for paths and keys, one safe to show."""

import re
import unicodedata

MAX_NAME_CHARS = 120
MAX_DISPLAY_CHARS = 255
_UNSAFE = re.compile(r"[^\w.\- ]+")


def _without_controls(name: str) -> str:
    return "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")


def safe_name(filename: str | None) -> str:
    """A filename made safe as one path component or S3 key part.

    NFKC folds look-alike characters (fullwidth dots and slashes) into the ASCII
    ones before anything is checked; only the last path component is kept; control
    and format characters (NUL, bidi overrides) go, and so does anything outside
    letters, digits, `.`, `-`, `_` and space; runs of dots collapse to one.
    """
    name = unicodedata.normalize("NFKC", filename or "")
    name = _without_controls(re.split(r"[/\\]", name)[-1])
    name = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", name)).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem if dot else name)[: MAX_NAME_CHARS - len(ext) - 1] + (f".{ext}" if ext else "")
    return name or "file"


def display_name(filename: str | None) -> str:
    """The name as the user gave it, minus control characters, bounded in length."""
    name = _without_controls(unicodedata.normalize("NFC", filename or "")).strip()
    return name[:MAX_DISPLAY_CHARS] or "file"
