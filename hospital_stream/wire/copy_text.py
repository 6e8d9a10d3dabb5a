"""PostgreSQL COPY text: the format of every batch chunk's rows, and the digest a header carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hospital_stream.errors import InvalidMessage, UnencodableText

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


# --- COPY text decoding ---------------------------------------------------------------------------
#
# The rows as PostgreSQL reads them (copyfromparse.c, text format, tab delimiter, UTF-8), so an
# agent that reads a chunk sees what COPY stores: a backslash takes the next byte literally
# (an escaped tab or newline is data), except \b \f \n \r \t \v, octal \NNN and hex \xHH; a
# field that is exactly \N is NULL. What PostgreSQL refuses is refused too, as InvalidMessage:
# a NUL, bytes that are not UTF-8, a bare carriage return (another line ending), the end-of-data
# marker \., and a last line without its newline (PostgreSQL would take it; the header's row
# count would not).

_FIELD = re.compile(rb"((?:[^\\\t\n\r]|\\[\s\S])*)([\t\n])")
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|x[0-9A-Fa-f]{1,2}|[\s\S])")
_ESCAPED = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def decode_copy_rows(payload: bytes) -> Iterator[list[str | None]]:
    """The rows of COPY text as PostgreSQL reads them, as strings (None for NULL); the inverse
    of :func:`encode_copy_rows`. :class:`InvalidMessage` for what PostgreSQL would refuse."""
    if not payload:
        return
    if not payload.endswith(b"\n"):
        raise InvalidMessage("COPY text whose last row has no newline")
    if b"\0" in payload:
        raise InvalidMessage("COPY text with a NUL byte")
    if b"\\" not in payload:  # no escapes: rows and fields split where they seem to
        if b"\r" in payload:
            raise InvalidMessage("COPY text with a bare carriage return")
        for line in _text(payload).split("\n")[:-1]:
            yield [None if field == "\\N" else field for field in line.split("\t")]
        return
    row: list[str | None] = []
    position = 0
    while position < len(payload):
        match = _FIELD.match(payload, position)
        if match is None:
            raise InvalidMessage(
                f"COPY text with a bare carriage return or a lone backslash at byte {position}"
            )
        raw, end = match.groups()
        row.append(None if raw == b"\\N" else _text(_ESCAPE.sub(_unescape, raw) if b"\\" in raw else raw))
        if end == b"\n":
            yield row
            row = []
        position = match.end()


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match[1]
    if code[0] in b"01234567":
        byte = int(code, 8) & 0xFF
    elif len(code) > 1:  # x and hex digits
        byte = int(code[1:], 16)
    elif code == b".":
        raise InvalidMessage("COPY text with the end-of-data marker \\.")
    else:
        return _ESCAPED.get(code, code)
    if not byte:
        raise InvalidMessage("COPY text with an escaped NUL byte")
    return bytes((byte,))


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"COPY text that is not UTF-8 (byte {exc.start})") from None


def digest(payload: bytes) -> str:
    """The checksum a batch header carries for its payload."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
