"""What the stores can hold: text without NUL or lone surrogates (PostgreSQL and MongoDB refuse
them), and numbers both MongoDB and PostgreSQL's jsonb keep exactly. Upload metadata, search
filters and queries are checked against these before they reach a store."""

import math
from typing import Any


def storable_number(value: int | float) -> bool:
    """A number MongoDB and PostgreSQL's jsonb both hold: finite (JSON has no NaN or Infinity; 1e400
    reads as inf), an integer within 64 bits (what upload metadata may hold, app/intake/metadata.py)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return -(2**63) <= value < 2**63


def storable(text: str) -> bool:
    """Text PostgreSQL and MongoDB can hold: no NUL, no lone surrogate (JSON lets `\\ud800` through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def unstorable(value: Any) -> bool:
    """Any string inside `value` (keys too) that is not `storable`."""
    if isinstance(value, str):
        return not storable(value)
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(unstorable(v) for v in value)
    return False
