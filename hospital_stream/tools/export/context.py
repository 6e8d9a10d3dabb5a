"""What every exporter reads through: the snapshot's connection and its --from/--to filter per
table, the catalog's columns and primary keys, the SELECT of a table, and files written whole."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from hospital_stream.errors import HospitalStreamError
from hospital_stream.schema import STORED_TABLES
from hospital_stream.tools.export.options import DateRange

#: how --from/--to select each table's rows (the registry's time columns): the column holding
#: when a row happened or began, compared by its date in SAST. ``sim_day`` counts days from the
#: run's start date. Tables without one (reference tables, wards, staff) are exported whole;
#: patients see PATIENT_SOURCES.
TIME_COLUMNS = {name: table.time_column for name, table in STORED_TABLES.items() if table.time_column}
#: of those, the columns that hold dates (``*_on``), not instants (``*_at``) or days (``sim_day``)
DATE_COLUMNS = {column for column in TIME_COLUMNS.values() if column.endswith("_on")}
#: with --from/--to, patients are those that a row of these tables in the range refers to
PATIENT_SOURCES = ("bed_requests", "admissions", "transfers", "lab_results", "vital_signs", "prescriptions")
ADMISSION_SOURCES = ("diagnoses", "procedures")  # refer to patients through their admission


@dataclasses.dataclass
class _Context:
    conn: psycopg.Connection[Any]
    dates: DateRange
    start_date: dt.date

    def where(self, table: str, alias: str = "x") -> sql.Composable:
        """The --from/--to condition on ``table`` (aliased ``alias``); TRUE without a range."""
        if not self.dates:
            return sql.SQL("TRUE")
        if table == "patients":
            sources = [
                sql.SQL("SELECT s.patient_id FROM {} s WHERE {}").format(
                    sql.Identifier(t), self.where(t, "s")
                )
                for t in PATIENT_SOURCES
            ] + [
                sql.SQL(
                    "SELECT a.patient_id FROM {} s JOIN admissions a USING (admission_id) WHERE {}"
                ).format(sql.Identifier(t), self.where(t, "s"))
                for t in ADMISSION_SOURCES
            ]
            return sql.SQL("{}.patient_id IN ({})").format(
                sql.Identifier(alias), sql.SQL(" UNION ").join(sources)
            )
        column = TIME_COLUMNS.get(table)
        if column is None:
            return sql.SQL("TRUE")
        low: int | dt.date | None
        high: int | dt.date | None
        if column == "sim_day":
            low, high = self.dates.sim_days(self.start_date)
        elif column in DATE_COLUMNS:
            low, high = self.dates.first, self.dates.last
        else:
            start, end = self.dates.instants()
            return _between(sql.Identifier(alias, column), start, end, end_inclusive=False)
        return _between(sql.Identifier(alias, column), low, high, end_inclusive=True)

    def estimate(self, query: sql.Composable) -> int:
        """The planner's row estimate: cheap, and good enough for a progress bar."""
        plan = self.conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query)).fetchone()
        return int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0


def _between(column: sql.Composable, low: Any, high: Any, *, end_inclusive: bool) -> sql.Composable:
    parts = []
    if low is not None:
        parts.append(sql.SQL("{} >= {}").format(column, sql.Literal(low)))
    if high is not None:
        parts.append(
            sql.SQL("{} {} {}").format(column, sql.SQL("<=" if end_inclusive else "<"), sql.Literal(high))
        )
    return sql.SQL(" AND ").join(parts)


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str) -> Iterator[IO[Any]]:
    """Write ``path`` under a temporary name, renamed into place only when complete."""
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open(mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise HospitalStreamError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    type_name: str  # the regtype, e.g. "numeric", "timestamp with time zone"
    formatted: str  # with modifiers, e.g. "numeric(3,1)"
    typmod: int


def _columns(conn: psycopg.Connection[Any], table: str) -> list[_Column]:
    rows = conn.execute(
        "SELECT attname, atttypid::regtype::text, format_type(atttypid, atttypmod), atttypmod"
        " FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum",
        (table,),
    ).fetchall()
    return [_Column(*row) for row in rows]


def _primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (table,),
    ).fetchall()
    return [row[0] for row in rows]


def _table_query(context: _Context, table: str, columns: list[_Column]) -> sql.Composable:
    """SELECT the table's rows in the range, in primary-key order (so exports are diffable)."""
    key = _primary_key(context.conn, table)
    order = (
        sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.Identifier("x", k) for k in key)
        if key
        else sql.SQL("")
    )
    return sql.SQL("SELECT {} FROM {} x WHERE {}{}").format(
        sql.SQL(", ").join(sql.Identifier("x", c.name) for c in columns),
        sql.Identifier(table),
        context.where(table),
        order,
    )
