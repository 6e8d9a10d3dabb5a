"""The wire's limits, and strict readers of JSON fields for the batch header (the small messages
are msgspec Structs: see messages.py)."""

from __future__ import annotations

import json
from typing import Any

from hospital_stream.errors import InvalidMessage

SCHEMA_VERSION = 2
MAX_MESSAGE_BYTES = 900_000

# --- small validation helpers -----------------------------------------------------------------


def json_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidMessage("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"invalid JSON: {exc}") from exc
    except RecursionError:  # nesting deeper than the interpreter's stack
        raise InvalidMessage("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidMessage("expected a JSON object")
    return obj


def require(obj: dict[str, Any], name: str, kind: type) -> Any:
    if name not in obj:
        raise InvalidMessage(f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidMessage(f"field {name!r} must be {kind.__name__}")
    return value


def require_count(obj: dict[str, Any], name: str) -> int:
    return _count(require(obj, name, int), name)


def require_counts(obj: dict[str, Any], name: str) -> dict[str, int]:
    """A JSON object of counts (a day's rows per table)."""
    counts: dict[str, Any] = require(obj, name, dict)
    for value in counts.values():
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidMessage(f"field {name!r} must hold counts, not {type(value).__name__}")
        _count(value, name)
    return counts


def _count(value: int, name: str) -> int:
    if value < 0:
        raise InvalidMessage(f"field {name!r} is negative")
    if value >= 2**31:  # the columns it lands in are PostgreSQL integers
        raise InvalidMessage(f"field {name!r} is too large")
    return value
