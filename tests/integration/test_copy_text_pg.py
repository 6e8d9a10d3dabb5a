"""The COPY text model of tests/unit/test_props_copy_text.py, checked against a real PostgreSQL:
generated values encoded by the codec, generated spellings of text, and arbitrary bytes the
decoder accepts are stored by ``COPY ... FROM STDIN`` exactly as the codec says they read."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import example, given
from psycopg import sql

from hospital_stream.errors import InvalidMessage
from hospital_stream.settings import Settings
from hospital_stream.wire.copy_text import decode_copy_rows, encode_copy_rows
from tests.helpers import copy_text_bytes, copy_text_tables, spelled_copy_tables

pytestmark = [pytest.mark.integration]

WIDTHS = range(1, 5)


@pytest.fixture(scope="module")
def pg(embedded_stack: Settings) -> Iterator[psycopg.Connection]:
    """A connection with temporary tables ``copy_1`` .. ``copy_4`` of 1 to 4 text columns."""
    with psycopg.connect(embedded_stack.database_url) as conn:
        for width in WIDTHS:
            columns = sql.SQL(", ").join(
                sql.SQL("{} text").format(sql.Identifier(f"c{i}")) for i in range(width)
            )
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (n bigserial, {})").format(
                    sql.Identifier(f"copy_{width}"), columns
                )
            )
        conn.commit()
        yield conn


def stored(conn: psycopg.Connection, width: int, payload: bytes) -> list[list[str | None]]:
    """The rows PostgreSQL stores from ``payload`` (in a savepoint, rolled back)."""
    table = sql.Identifier(f"copy_{width}")
    columns = [sql.Identifier(f"c{i}") for i in range(width)]
    try:
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            with cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(columns))
            ) as copy:
                copy.write(payload)
            cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY n").format(sql.SQL(", ").join(columns), table))
            return [list(row) for row in cur.fetchall()]
    finally:
        conn.rollback()


@given(copy_text_tables)
def test_encoded_text_is_stored_exactly(pg, table):
    assert stored(pg, len(table[0]), encode_copy_rows(table)) == table


@given(spelled_copy_tables)
@example(([["A", "A", "\b"]], b"\\x41\t\\101\t\\b\n"))
def test_postgresql_reads_every_spelling_as_the_decoder_does(pg, case):
    table, payload = case
    assert stored(pg, len(table[0]), payload) == table == list(decode_copy_rows(payload))


@given(copy_text_bytes)
@example(b"\\0\n")
@example(b"\xff\n")
def test_bytes_the_decoder_accepts_are_stored_as_decoded(pg, payload):
    try:
        decoded = list(decode_copy_rows(payload))
    except InvalidMessage as exc:
        # refused by PostgreSQL too, unless its end-of-data marker stops it before
        if ("NUL" in str(exc) or "UTF-8" in str(exc)) and b"\\." not in payload:
            with pytest.raises(psycopg.errors.DataError):
                stored(pg, 1, payload)
        return
    widths = {len(row) for row in decoded}
    if len(widths) == 1 and widths <= set(WIDTHS):
        assert stored(pg, widths.pop(), payload) == decoded
