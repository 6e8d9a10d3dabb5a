"""PostgreSQL COPY text: the format of every batch chunk's rows, and the digest a header carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# --- COPY text encoding -------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def copy_field(value: Any) -> str:
    kind = type(value)
    if kind is int:  # the common cases first: this runs for every field of every tuple row
        return str(value)
    if kind is str:
        text: str = value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value
        return text
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def encode_copy_rows(rows: Iterable[Sequence[Any]]) -> bytes:
    """Rows as PostgreSQL COPY text: tab-separated, ``\\N`` for NULL, one row per line."""
    rows = list(rows)
    if not rows:
        return b""
    if not rows[0] or len({len(row) for row in rows}) > 1:  # no or ragged columns: field by field
        return "".join("\t".join(map(copy_field, row)) + "\n" for row in rows).encode()
    # column by column: a column's type is looked at once, not once a field
    fields = zip(*map(_copy_column, zip(*rows, strict=True)), strict=True)
    return ("\n".join(map("\t".join, fields)) + "\n").encode()


def _copy_column(values: Sequence[Any]) -> Iterable[str]:
    """A column's fields as :func:`copy_field` writes them."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return map(str, values)
    if kinds <= {int, type(None)}:
        return ["\\N" if value is None else str(value) for value in values]
    if kinds <= {str, type(None)} and not _NEEDS_ESCAPE("".join(v for v in values if v is not None)):
        return ["\\N" if value is None else value for value in values]
    return map(copy_field, values)


def decode_copy_rows(payload: bytes) -> Iterator[list[str | None]]:
    """The inverse of :func:`encode_copy_rows`, as strings (None for NULL)."""
    for line in payload.decode().split("\n")[:-1] if payload else []:
        yield [None if field == "\\N" else _unescape(field) for field in line.split("\t")]


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, chars = [], iter(field)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def digest(payload: bytes) -> str:
    """The checksum a batch header carries for its payload."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
