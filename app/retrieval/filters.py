"""Search filters: what a caller may restrict a search to, as a validated model.

The chunks store turns them into a WHERE clause of fixed fragments, every value a query
parameter (app/stores/chunks/where.py); `from_query_params` reads them from `GET /search`.

Metadata conditions compare JSON values: `{"team": "finance"}` matches a chunk whose
file has `team` equal to "finance", or an array containing it; `{"year": {"$in":
[2023, 2024]}}` matches any of the values. Types count: 2024 is not "2024".
"""

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.stores.storable import storable_number, unstorable

Scalar = str | int | float | bool | None
MAX_METADATA_KEYS = 32
MAX_IN_VALUES = 100
MAX_KEY_CHARS = 100
MAX_STRING_CHARS = 1000

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_CHARS)]


def _check_scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise ValueError(f"key {key!r}: a string value may have at most {MAX_STRING_CHARS} characters")
    if isinstance(value, int | float) and not isinstance(value, bool) and not storable_number(value):
        raise ValueError(f"key {key!r}: numbers must be finite (no NaN, Infinity), integers fit in 64 bits")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"key {key!r}: expected a string, number, boolean or null (or {{'$in': [...]}})")


class Filters(BaseModel):
    """Restrict a search. Every condition given must hold (AND); none given: everything."""

    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=1000, description="only these files")
    content_types: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, min_length=1, max_length=50, description="e.g. application/pdf, text/markdown"
    )
    filename: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="a glob, case-insensitive: `*` any characters, `?` one character (`report-*.pdf`)",
    )
    uploaded_after: datetime | None = Field(None, description="uploaded at or after (ISO 8601; UTC if no zone)")
    uploaded_before: datetime | None = Field(None, description="uploaded before (ISO 8601; UTC if no zone)")
    metadata: dict[MetadataKey, Any] | None = Field(
        None,
        description='equality `{"team": "finance"}` (an array value matches if it contains it) or '
        '`{"year": {"$in": [2023, 2024]}}`',
    )

    @field_validator("uploaded_after", "uploaded_before")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
        out: dict[str, Any] = {}
        for key, cond in value.items():
            if isinstance(cond, dict):
                if set(cond) != {"$in"}:
                    raise ValueError(f"key {key!r}: the only operator is $in, as {{'$in': [values]}}")
                values = cond["$in"]
                if not isinstance(values, list) or not 1 <= len(values) <= MAX_IN_VALUES:
                    raise ValueError(f"key {key!r}: $in takes a list of 1 to {MAX_IN_VALUES} values")
                out[key] = {"$in": [_check_scalar(key, v) for v in values]}
            elif isinstance(cond, list):
                raise ValueError(f"key {key!r}: to match any of several values use {{'$in': [...]}}")
            else:
                out[key] = _check_scalar(key, cond)
        return out

    @model_validator(mode="after")
    def _range(self) -> "Filters":
        if self.uploaded_after and self.uploaded_before and self.uploaded_after >= self.uploaded_before:
            raise ValueError("uploaded_after must be earlier than uploaded_before")
        if unstorable([self.filename, self.content_types, self.metadata]):
            raise ValueError("filters may not contain NUL characters or invalid Unicode")
        return self

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


def from_query_params(items: list[tuple[str, str]]) -> dict[str, Any]:
    """`meta.KEY=VALUE` query parameters (GET /search) as a metadata filter.

    A value is matched as the string given and, if it reads as a JSON scalar, as
    that too (`meta.year=2024` matches 2024 and "2024"); a repeated key matches any. A number
    no metadata can hold (past 64 bits, or beyond a float's range) is matched as the string only.
    """
    out: dict[str, list[Scalar]] = {}
    for name, raw in items:
        if not name.startswith("meta."):
            continue
        key = name[len("meta.") :]
        values = out.setdefault(key, [])
        for c in [raw, *_json_scalar(raw)]:
            if (type(c), c) not in {(type(v), v) for v in values}:  # True == 1, but not as metadata
                values.append(c)
    return {k: (v[0] if len(v) == 1 else {"$in": v}) for k, v in out.items()}


_JSON_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_JSON_WORDS: dict[str, Scalar] = {"true": True, "false": False, "null": None}


def _json_scalar(raw: str) -> list[Scalar]:
    """`raw` read as a JSON scalar metadata can hold: [value], or [] when it is none."""
    if raw in _JSON_WORDS:
        return [_JSON_WORDS[raw]]
    if not _JSON_NUMBER.fullmatch(raw):
        return []
    if "." in raw:
        number: int | float = float(raw)
    elif len(raw) <= 20:  # no 64-bit integer is longer (int() refuses more than 4300 digits)
        number = int(raw)
    else:
        return []
    return [number] if storable_number(number) else []
