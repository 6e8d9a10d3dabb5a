"""CSV and Parquet files, one per table.

- CSV: ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)`` written block by block.
- Parquet: the same COPY (without header) parsed by pyarrow's streaming CSV reader with the
  column types taken from the catalog; each block of about 8 MB of CSV becomes one row group.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg import sql

from hospital_stream import db
from hospital_stream.errors import HospitalStreamError
from hospital_stream.tools.export.context import (
    _atomic_file,
    _Column,
    _columns,
    _Context,
    _table_query,
)
from hospital_stream.tools.export.progress import Progress, Written

COPY_BLOCK_BYTES = 8 << 20  # CSV bytes per Parquet row group (about 50k-150k rows)


def _export_csv(context: _Context, table: str, out_dir: Path, progress: Progress) -> Written:
    started, size = time.monotonic(), 0
    path = out_dir / f"{table}.csv"
    query = _table_query(context, table, _columns(context.conn, table))
    copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(query)
    with (
        progress(table, context.estimate(query)) as advance,
        _atomic_file(path, "wb") as handle,
        context.conn.cursor() as cur,
    ):
        with cur.copy(copy_sql) as copy:
            for block in copy:
                data = bytes(block)
                handle.write(data)
                size += len(data)
                advance(data.count(b"\n"))  # rows, but for newlines inside values
        rows = cur.rowcount
    return Written(table, path, rows, size, time.monotonic() - started)


def arrow_type(column: _Column) -> Any:
    """The Arrow type a PostgreSQL column is written as in Parquet."""
    import pyarrow as pa

    simple = {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "smallint": pa.int16(),
        "double precision": pa.float64(),
        "real": pa.float32(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
        "timestamp without time zone": pa.timestamp("us"),
    }
    if column.type_name in simple:
        return simple[column.type_name]
    if column.type_name == "numeric":
        if column.typmod >= 4:  # numeric(p, s): an exact decimal
            precision, scale = ((column.typmod - 4) >> 16) & 0xFFFF, (column.typmod - 4) & 0xFFFF
            if precision <= 38:
                return pa.decimal128(precision, scale)
        return pa.float64()  # an unconstrained numeric has no Arrow decimal that always fits
    return pa.string()  # text, char, varchar, json, and anything else, as PostgreSQL prints it


class _CopyStream(io.RawIOBase):
    """A readable file over a COPY's blocks, for pyarrow's streaming CSV reader."""

    def __init__(self, blocks: Iterator[Any]) -> None:
        self.blocks, self.pending = blocks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def at_end(self) -> bool:
        """True when nothing is left to read (fetching the next block if needed)."""
        while not self.pending:
            block = next(self.blocks, None)
            if block is None:
                return True
            self.pending = memoryview(bytes(block))
        return False

    def readinto(self, buffer: Any) -> int:
        if self.at_end():
            return 0
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count


def _export_parquet(context: _Context, table: str, out_dir: Path, progress: Progress) -> Written:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    started, rows = time.monotonic(), 0
    path = out_dir / f"{table}.parquet"
    columns = _columns(context.conn, table)
    schema = pa.schema(
        [pa.field(c.name, arrow_type(c), metadata={"pg_type": c.formatted}) for c in columns],
        metadata={"source_table": table},
    )
    query = _table_query(context, table, columns)
    copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
    read_options = pa_csv.ReadOptions(
        column_names=[c.name for c in columns], block_size=COPY_BLOCK_BYTES, use_threads=False
    )
    convert_options = pa_csv.ConvertOptions(
        column_types={f.name: f.type for f in schema},
        null_values=[""],  # COPY writes NULL unquoted and empty, and an empty string as ""
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    parse_options = pa_csv.ParseOptions(newlines_in_values=True)
    with (
        progress(table, context.estimate(query)) as advance,
        _atomic_file(path, "wb") as handle,
        context.conn.cursor() as cur,
        cur.copy(copy_sql) as copy,
        pq.ParquetWriter(handle, schema) as writer,
    ):
        stream = _CopyStream(iter(copy))
        # pyarrow refuses an empty CSV: an empty table is a file with no row group
        try:
            if not stream.at_end():
                reader = pa_csv.open_csv(
                    # buffered, because Arrow takes a short read for the end of the stream
                    io.BufferedReader(stream, buffer_size=1 << 20),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
                for batch in reader:
                    writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                    rows += batch.num_rows
                    advance(batch.num_rows)
        except pa.ArrowInvalid as exc:  # e.g. a numeric 'NaN' or an 'infinity' timestamp
            raise HospitalStreamError(f"{table}: a value Parquet cannot hold: {db.first_line(exc)}") from exc
    return Written(table, path, rows, path.stat().st_size, time.monotonic() - started)
