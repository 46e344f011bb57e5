"""Search filters as a WHERE clause over `chunks`: fixed fragments only, every value the caller
sent a query parameter, never SQL text.

Metadata conditions are `metadata @> ANY(jsonb[])`: a stored scalar equal to the value, or a
stored array that contains it.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb


class ChunkFilter(Protocol):
    """What a search may be restricted to (app/retrieval/filters.py `Filters` is one)."""

    file_ids: Sequence[uuid.UUID] | None
    content_types: Sequence[str] | None
    filename: str | None
    uploaded_after: datetime | None
    uploaded_before: datetime | None
    metadata: dict[str, Any] | None


def glob_to_like(pattern: str) -> str:
    """A filename glob as an ILIKE pattern: `*` -> `%`, `?` -> `_`, the rest literal."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "\\%_":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _candidates(key: str, value: Any) -> list[Jsonb]:
    # a stored scalar equal to the value, or a stored array that contains it
    return [Jsonb({key: value}), Jsonb({key: [value]})]


def to_sql(filters: ChunkFilter | None, prefix: str = "f_") -> tuple[str, dict[str, Any]]:
    """`(" AND ...", params)` to append to a WHERE clause over `chunks`; ("", {}) without filters."""
    if filters is None:
        return "", {}
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if filters.file_ids is not None:
        clauses.append(f"file_id = ANY(%({prefix}file_ids)s::uuid[])")
        params[f"{prefix}file_ids"] = list(filters.file_ids)
    if filters.content_types is not None:
        clauses.append(f"content_type = ANY(%({prefix}content_types)s::text[])")
        params[f"{prefix}content_types"] = list(filters.content_types)
    if filters.filename is not None:
        clauses.append(f"filename ILIKE %({prefix}filename)s")
        params[f"{prefix}filename"] = glob_to_like(filters.filename)
    # chunks written before uploaded_at existed fall back to when they were indexed
    if filters.uploaded_after is not None:
        clauses.append(f"coalesce(uploaded_at, created_at) >= %({prefix}after)s")
        params[f"{prefix}after"] = filters.uploaded_after
    if filters.uploaded_before is not None:
        clauses.append(f"coalesce(uploaded_at, created_at) < %({prefix}before)s")
        params[f"{prefix}before"] = filters.uploaded_before
    for i, (key, cond) in enumerate((filters.metadata or {}).items()):
        values = cond["$in"] if isinstance(cond, dict) else [cond]
        clauses.append(f"metadata @> ANY(%({prefix}m{i})s::jsonb[])")
        params[f"{prefix}m{i}"] = [c for v in values for c in _candidates(key, v)]
    return "".join(f" AND {c}" for c in clauses), params
