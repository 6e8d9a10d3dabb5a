"""PostgreSQL COPY text: the format of every batch chunk's rows, and the digest a header carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hospital_stream.errors import UnencodableText

# --- COPY text encoding -------------------------------------------------------------------------
#
# PostgreSQL's text type cannot hold NUL, and UTF-8 cannot carry a lone surrogate: a value with
# either is refused (UnencodableText), because any stand-in would store something else.

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
#: what a text field cannot hold as it is: the escaped characters, and NUL (refused)
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r\0]").search


def copy_field(value: Any) -> str:
    """One value as a field of COPY text (``\\N`` for None); :class:`UnencodableText` for a NUL."""
    kind = type(value)
    if kind is int:  # the common cases first: this runs for every field of every tuple row
        return str(value)
    if kind is str:
        return _escape(value) if _NEEDS_ESCAPE(value) else value
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value)  # str subclasses too
    return _escape(text) if _NEEDS_ESCAPE(text) else text


def _escape(text: str) -> str:
    if "\0" in text:
        raise UnencodableText("text with a NUL character cannot be stored in PostgreSQL")
    return text.translate(_COPY_ESCAPES)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise UnencodableText(
            f"text with a lone surrogate {text[exc.start]!r} cannot be encoded in UTF-8"
        ) from None


def encode_copy_rows(rows: Iterable[Sequence[Any]]) -> bytes:
    """Rows as PostgreSQL COPY text: tab-separated, ``\\N`` for NULL, one row per line."""
    rows = list(rows)
    if not rows:
        return b""
    if not rows[0] or len({len(row) for row in rows}) > 1:  # no or ragged columns: field by field
        return _utf8("".join("\t".join(map(copy_field, row)) + "\n" for row in rows))
    # column by column: a column's type is looked at once, not once a field
    fields = zip(*map(_copy_column, zip(*rows, strict=True)), strict=True)
    return _utf8("\n".join(map("\t".join, fields)) + "\n")


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
