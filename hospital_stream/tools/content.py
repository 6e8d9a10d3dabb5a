"""Content equals simulator: every stored row against what the deterministic simulator made.

The simulator is run again for the stored days, with the run's recorded config (``simulation``)
from the checkpoint of the day before the first one judged. Each of a day's batch tables is then
one md5 over its rows, for the simulator's rows and for the stored ones: PostgreSQL computes both
with the same expression, the simulator's after a COPY of the very text the sink writes into a
temporary table of the stored columns, so both sides are read by the same types and written back
by the same text output. A day's checkpoint is compared as an md5 of its bytes.

:data:`SOURCES` says, for each batch table, which stored rows are a day's: the rows of that
``sim_day``; for the rows that update a stored row (discharges, retirements, assignments ending)
the rows whose date is that day's. ``validate``'s ``rows per day`` counts the same rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from hospital_stream import db, schema
from hospital_stream.errors import DatabaseError
from hospital_stream.model import (
    DayRecords,
    HospitalConfig,
    calendar,
    decode_checkpoint,
    encode_checkpoint,
    iter_days,
)
from hospital_stream.wire.batch import table_payload

TZ = calendar.TIME_ZONE_NAME
#: the pseudo-table of a day's checkpoint (``sim_days.checkpoint``)
CHECKPOINT = "checkpoint"
#: how many differing rows the first difference shows
SAMPLE_ROWS = 4

#: (rows, md5) of one day's rows of one table
Digest = tuple[int, str]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a batch table's rows of a day are stored: ``from_`` with its rows ``t``, the day
    each row belongs to (``day``) and a condition keeping the window's days."""

    spec: schema.TableSpec
    from_: str
    day: str
    where: str

    def rows_sql(self, text: bool = True) -> str:
        """The window's rows as (sim_day, row text) (``text=False``: just their day)."""
        row = f", {_row(self.spec.name)} AS r" if text else ""
        return f"SELECT {self.day} AS sim_day{row} FROM {self.from_} WHERE {self.where}"


_WINDOW = "BETWEEN %(first)s AND %(last)s"
_LOCAL_DAYS = (  # the window's local days, as a range the index on discharged_at answers
    " AND t.discharged_at >= (SELECT sim_date FROM sim_days WHERE sim_day = %(first)s)::timestamp"
    " AT TIME ZONE %(tz)s AND t.discharged_at < (SELECT sim_date + 1 FROM sim_days WHERE"
    " sim_day = %(last)s)::timestamp AT TIME ZONE %(tz)s"
)
_DATED = {  # the rows that update a stored row: the day is the one whose date they carry
    "staff_retirements": ("JOIN sim_days d ON d.sim_date = t.retired_on", ""),
    "staff_assignment_ends": ("JOIN sim_days d ON d.sim_date = t.ends_on + 1", ""),
    "admission_discharges": (
        "JOIN sim_days d ON d.sim_date = (t.discharged_at AT TIME ZONE %(tz)s)::date",
        _LOCAL_DAYS,
    ),
}


def _source(spec: schema.TableSpec) -> Source:
    if spec.name in _DATED:
        join, also = _DATED[spec.name]
        return Source(spec, f"{spec.target} t {join}", "d.sim_day", f"d.sim_day {_WINDOW}{also}")
    if not schema.STORED_TABLES[spec.target].has_sim_day:  # the reference catalogues: day 0's
        return Source(spec, f"{spec.target} t", "0", "%(first)s = 0")
    return Source(spec, f"{spec.target} t", "t.sim_day", f"t.sim_day {_WINDOW}")


#: every batch table's stored rows, in the order a day sends them
SOURCES: dict[str, Source] = {name: _source(spec) for name, spec in schema.TABLES.items()}

_MD5 = "md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), ''))"


@dataclasses.dataclass(frozen=True)
class Difference:
    """A (day, table) whose stored rows differ from the simulator's, with some of the rows."""

    day: int
    table: str
    stored: Digest
    simulated: Digest
    #: ("stored only" | "simulator only", row text)
    rows: list[tuple[str, str]]


def session(conn: psycopg.Connection[Any]) -> None:
    """Render timestamps in the hospital's time, whatever the login's default, so that digests
    computed in different sessions agree."""
    conn.execute("SELECT set_config('TimeZone', %s, false), set_config('DateStyle', 'ISO', false)", (TZ,))


def stored_digests(conn: psycopg.Connection[Any], first: int, last: int) -> dict[tuple[int, str], Digest]:
    """(rows, md5) per (day, table) of the stored rows of the days ``first..last``; a day's
    table with no rows is left out."""
    session(conn)
    params = {"first": first, "last": last, "tz": TZ}
    found: dict[tuple[int, str], Digest] = {}
    for name, source in SOURCES.items():
        query = f"SELECT sim_day, count(*), {_MD5} FROM ({source.rows_sql()}) x GROUP BY sim_day"
        for day, rows, md5 in conn.execute(query, params).fetchall():  # type: ignore[arg-type]
            found[(int(day), name)] = (int(rows), str(md5))
    query = f"SELECT sim_day, md5(checkpoint) FROM sim_days WHERE sim_day {_WINDOW}"
    for day, md5 in conn.execute(query, params).fetchall():  # type: ignore[arg-type]
        found[(int(day), CHECKPOINT)] = (1, str(md5))
    return found


def run_config(conn: psycopg.Connection[Any]) -> HospitalConfig:
    """The config the stored run was simulated with."""
    row = conn.execute("SELECT config FROM simulation").fetchone()
    if row is None:
        raise DatabaseError("no run stored: the simulation table is empty")
    return HospitalConfig.from_json(row[0])


def simulate(conn: psycopg.Connection[Any], first: int, last: int) -> Iterator[DayRecords]:
    """The simulator's days ``first..last`` of the stored run, from the stored checkpoint of the
    day before ``first``."""
    state = decode_checkpoint(db.checkpoint_after(conn, first - 1)) if first > 0 else None
    return iter_days(run_config(conn), last - first + 1, state)


class Comparison:
    """The simulator's digests of day after day against the stored ones; the first differing
    (day, table) with rows that differ. Staging tables are temporary (the TEMPORARY right)."""

    def __init__(self, conn: psycopg.Connection[Any], first: int, last: int) -> None:
        self.conn = conn
        self.records = simulate(conn, first, last)
        self.differences = 0
        self.first: Difference | None = None
        self.simulated: dict[tuple[int, str], Digest] = {}
        session(conn)
        for name, spec in schema.TABLES.items():
            conn.execute(
                sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                    sql.Identifier(_stage(name)),
                    sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
                    sql.Identifier(spec.target),
                )
            )

    def window(self, first: int, last: int) -> None:
        """Compare the days ``first..last``, the next ones the simulator makes."""
        stored = stored_digests(self.conn, first, last)
        for day in range(first, last + 1):
            day_records = next(self.records)
            assert day_records.day == day, (day_records.day, day)
            for name in schema.TABLES:
                self._compare(day, name, self._load(name, day_records), stored.get((day, name), (0, "")))
            blob = encode_checkpoint(day_records.state)
            mine = (1, hashlib.md5(blob, usedforsecurity=False).hexdigest())
            self._compare(day, CHECKPOINT, mine, stored.get((day, CHECKPOINT), (0, "")))

    def _load(self, name: str, records: DayRecords) -> Digest:
        stage = sql.Identifier(_stage(name))
        self.conn.execute(sql.SQL("TRUNCATE {}").format(stage))
        rows = records.tables.get(name, ())
        if not len(rows):
            return (0, "")
        columns = sql.SQL(", ").join(map(sql.Identifier, schema.TABLES[name].columns))
        with (
            self.conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy,
        ):
            copy.write(table_payload(rows))
        query = f"SELECT count(*), {_MD5} FROM (SELECT {_row(name)} AS r FROM {_stage(name)} t) x"
        count, md5 = self.conn.execute(query).fetchone()  # type: ignore[arg-type, misc]
        return (int(count), str(md5))

    def _compare(self, day: int, name: str, simulated: Digest, stored: Digest) -> None:
        self.simulated[(day, name)] = simulated
        if simulated == stored:
            return
        self.differences += 1
        if self.first is None:
            rows = [] if name == CHECKPOINT else self._differing_rows(day, name)
            self.first = Difference(day, name, stored, simulated, rows)

    def _differing_rows(self, day: int, name: str) -> list[tuple[str, str]]:
        query = (
            f"WITH s AS ({SOURCES[name].rows_sql()}), m AS (SELECT {_row(name)} AS r FROM {_stage(name)} t)"
            " SELECT side, r FROM ("
            "(SELECT 'stored only' AS side, r FROM s EXCEPT ALL SELECT 'stored only', r FROM m)"
            " UNION ALL (SELECT 'simulator only', r FROM m EXCEPT ALL SELECT 'simulator only', r FROM s)) d"
            f' ORDER BY r COLLATE "C", side LIMIT {SAMPLE_ROWS}'
        )
        params = {"first": day, "last": day, "tz": TZ}
        return [(str(a), str(b)) for a, b in self.conn.execute(query, params).fetchall()]  # type: ignore[arg-type]


def _stage(name: str) -> str:
    return f"content_{name}"


def _row(name: str) -> str:
    return f"ROW({', '.join(f't.{c}' for c in schema.TABLES[name].columns)})::text"
