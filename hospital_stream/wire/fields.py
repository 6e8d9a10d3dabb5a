"""The wire's limits and envelope (value, size, key), and strict readers of JSON fields for the
batch header (the small messages are msgspec Structs: see messages.py)."""

from __future__ import annotations

import json
from typing import Any

from hospital_stream.errors import InvalidMessage
from hospital_stream.wire.kinds import DeadLetterKind

SCHEMA_VERSION = 2
#: the largest message a worker takes; the broker's own limit is 1 MB (1,048,576 bytes)
MAX_MESSAGE_BYTES = 900_000

# --- the envelope: what every consumed message must be before its payload is read -------------


def check_envelope(key: bytes | None, value: bytes | None) -> bytes:
    """``value``, once it is a value (not a tombstone), within the size limit and keyed."""
    if value is None:
        raise InvalidMessage("tombstone: the message has no value", DeadLetterKind.TOMBSTONE)
    check_size(value)
    if key is None:
        raise InvalidMessage("keyless message: every send carries a key", DeadLetterKind.BAD_KEY)
    return value


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(
            f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}", DeadLetterKind.OVERSIZED
        )


def check_key(key: bytes | None, expected: str) -> None:
    """The message's key is the one its payload calls for (``expected``)."""
    if key != expected.encode():
        shown = "none" if key is None else repr(key[:40])
        raise InvalidMessage(f"key {shown} does not match the payload's {expected!r}", DeadLetterKind.BAD_KEY)


def check_version(version: object) -> None:
    if type(version) is not int or version != SCHEMA_VERSION:  # not 2.0, nor True for 1
        raise InvalidMessage(
            f"unsupported schema version {str(version)[:40]!r} (this worker speaks {SCHEMA_VERSION})",
            DeadLetterKind.VERSION,
        )


# --- small validation helpers -----------------------------------------------------------------


def json_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidMessage("empty message")
    check_size(raw)
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
