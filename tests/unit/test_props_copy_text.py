"""Properties of the COPY text codec (wire/copy_text.py): a value round-trips exactly through
PostgreSQL's COPY text rules, or is refused with UnencodableText; bytes from anywhere decode as
PostgreSQL reads them, or are refused with InvalidMessage. tests/integration/test_copy_text_pg.py
checks the same model against a real COPY."""

import datetime as dt

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hospital_stream.errors import InvalidMessage, UnencodableText
from hospital_stream.wire.copy_text import copy_field, decode_copy_rows, encode_copy_rows
from tests.helpers import copy_text_bytes, copy_text_values, spelled_copy_tables

#: what the decoder returns for a value that encoded: COPY text carries strings
AS_TEXT = {
    bool: lambda v: "t" if v else "f",
    int: str,
    str: lambda v: v,
    dt.date: dt.date.isoformat,
    dt.datetime: dt.datetime.isoformat,
}


def _as_text(value):
    return None if value is None else AS_TEXT[type(value)](value)


def _unencodable(value) -> bool:
    """A NUL, which PostgreSQL's text cannot hold, or a lone surrogate, which UTF-8 cannot."""
    return isinstance(value, str) and any(c == "\0" or "\ud800" <= c <= "\udfff" for c in value)


rows = st.integers(1, 4).flatmap(
    lambda n: st.lists(st.tuples(*[copy_text_values] * n), min_size=1, max_size=6)
)


@given(rows)
@example([("a\0b",)])  # NUL went through to PostgreSQL, which refuses the whole chunk
@example([("\ud800",)])  # a lone surrogate raised UnicodeEncodeError, outside the exception family
@example([(1, None), (2, "x\0")])  # the column-wise path too
def test_rows_round_trip_exactly_or_are_refused(rows):
    if any(map(_unencodable, (v for row in rows for v in row))):
        with pytest.raises(UnencodableText):
            encode_copy_rows(rows)
        return
    payload = encode_copy_rows(rows)
    assert list(decode_copy_rows(payload)) == [[_as_text(v) for v in row] for row in rows]
    # one field per value, one line per row: nothing the value holds can split them
    assert payload.count(b"\n") == len(rows)
    assert all(line.count(b"\t") == len(rows[0]) - 1 for line in payload.split(b"\n")[:-1])


@given(rows)
def test_column_by_column_encodes_as_field_by_field(rows):
    try:
        fields = [[copy_field(v) for v in row] for row in rows]
        expected = "".join("\t".join(f) + "\n" for f in fields).encode()
    except (UnencodableText, UnicodeEncodeError):
        with pytest.raises(UnencodableText):
            encode_copy_rows(rows)
        return
    assert encode_copy_rows(rows) == expected


@given(spelled_copy_tables)
@example(([["A", "A", "\b"]], b"\\x41\t\\101\t\\b\n"))  # hex, octal, \b were read as "x41", "101", "b"
@example(([["\u00e9"]], b"\\303\\251\n"))  # octal bytes of one UTF-8 character
@example(([["a\tb", "c\nd"]], b"a\\\tb\tc\\\nd\n"))  # an escaped tab or newline is data
def test_every_spelling_postgresql_accepts_decodes_to_its_text(case):
    table, payload = case
    assert list(decode_copy_rows(payload)) == table


@given(copy_text_bytes)
@example(b"\\.\n")  # PostgreSQL's end-of-data marker
@example(b"\\0\n")  # an escaped NUL
@example(b"\xff\n")  # not UTF-8: raised UnicodeDecodeError
@example(b"a\rb\n")  # a bare carriage return ends a line for PostgreSQL
@example(b"1\t2")  # a last row without its newline was dropped
def test_any_bytes_decode_to_text_rows_or_are_refused(payload):
    try:
        decoded = list(decode_copy_rows(payload))
    except InvalidMessage as exc:  # refused with a one-line reason
        reason = str(exc)
        assert reason
        assert "\n" not in reason
        return
    assert all(isinstance(f, str | None) for row in decoded for f in row)
    assert len(decoded) <= payload.count(b"\n")
    # what decodes is text PostgreSQL can store, and encodes back to the same rows
    assert list(decode_copy_rows(encode_copy_rows(decoded))) == decoded
