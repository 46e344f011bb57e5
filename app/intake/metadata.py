"""Metadata attached to files at upload, copied onto their chunks, matched by search filters.

`POST /upload` takes two optional non-file parts:
- `metadata`: a JSON object applied to every file of the request;
- `file_metadata`: a JSON object keyed by filename (as sent), each value a JSON object
  for the files of that name, merged over `metadata` (its keys win).

Each part is at most 16 KB. Keys are 1-100 characters, without `$` at the start, `.` or
NUL (they become MongoDB field names); values are strings, numbers (integers within 64
bits), booleans, null, or arrays of those (at most 100). Anything else is refused with 422 `invalid_metadata`.
"""

import json
from collections.abc import Iterable
from typing import Any

from app.stores.storable import storable, storable_number

MAX_BYTES = 16 * 1024
MAX_KEYS = 64
MAX_KEY_CHARS = 100
MAX_ARRAY = 100
PARTS = ("metadata", "file_metadata")


class InvalidMetadata(ValueError):
    pass


def _scalar_ok(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)  # no NUL or lone surrogate: the chunks' copy is in PostgreSQL
    if isinstance(value, int | float) and not isinstance(value, bool):
        return storable_number(value)
    return value is None or isinstance(value, bool)


def validate(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidMetadata(f"{where} must be a JSON object.")
    if len(obj) > MAX_KEYS:
        raise InvalidMetadata(f"{where} has more than {MAX_KEYS} keys.")
    for key, value in obj.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise InvalidMetadata(f"{where}: keys are strings of 1 to {MAX_KEY_CHARS} characters.")
        if key.startswith("$") or "." in key or not storable(key):
            raise InvalidMetadata(f"{where}: key {key!r} may not start with '$' or contain '.'.")
        if isinstance(value, list):
            if len(value) > MAX_ARRAY or not all(_scalar_ok(v) for v in value):
                raise InvalidMetadata(
                    f"{where}.{key}: an array holds at most {MAX_ARRAY} strings, numbers, booleans or nulls."
                )
        elif not _scalar_ok(value):
            raise InvalidMetadata(
                f"{where}.{key}: a value is a string, number, boolean, null or an array of those"
                " (no objects; no NUL characters)."
            )
    return obj


def parse(part: str, raw: bytes) -> Any:
    if len(raw) > MAX_BYTES:
        raise InvalidMetadata(f"{part} is larger than {MAX_BYTES} bytes.")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise InvalidMetadata(f"{part}: arrays and objects are nested too deeply.") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMetadata(f"{part} is not valid JSON: {exc}") from exc


def per_file(parts: dict[str, bytes], filenames: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The metadata of each filename of the request, from the raw `metadata` / `file_metadata` parts."""
    names = list(filenames)
    common = validate(parse("metadata", parts["metadata"]), "metadata") if "metadata" in parts else {}
    by_name: dict[str, Any] = {}
    if "file_metadata" in parts:
        by_name = parse("file_metadata", parts["file_metadata"])
        if not isinstance(by_name, dict):
            raise InvalidMetadata("file_metadata must be a JSON object keyed by filename.")
        for name, obj in by_name.items():
            if name not in names:
                raise InvalidMetadata(f"file_metadata names {name!r}, which is not a file of this request.")
            validate(obj, f"file_metadata[{name!r}]")
    out = {}
    for name in names:
        merged = {**common, **by_name.get(name, {})}
        if len(merged) > MAX_KEYS:
            raise InvalidMetadata(f"{name!r}: more than {MAX_KEYS} metadata keys.")
        out[name] = merged
    return out
