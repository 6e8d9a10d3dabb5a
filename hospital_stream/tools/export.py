"""Standard exports, streamed in bounded memory: CSV and Parquet files per table, and FHIR R4
bulk-data NDJSON files per resource type.

Everything is read in one read-only REPEATABLE READ transaction, so every file of an export
shows the same moment of the database while a worker keeps writing. Only SELECT and COPY ... TO
STDOUT are used, so the ``hospital_reader`` role is enough.

- CSV: ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)`` written block by block.
- Parquet: the same COPY (without header) parsed by pyarrow's streaming CSV reader with the
  column types taken from the catalog; each block of about 8 MB of CSV becomes one row group.
- FHIR: a server-side cursor per source query, each row built into plain dicts and written as
  one JSON line (FHIR's Bulk Data format). The FHIR model libraries are used only by the tests.

Timestamps are written in SAST (+02:00, the hospital's time) in CSV and FHIR, and as UTC
instants (timestamp[us, tz=UTC]) in Parquet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from hospital_stream import db, schema
from hospital_stream.errors import ConfigError, DatabaseError, HospitalStreamError

logger = logging.getLogger(__name__)

FORMATS = ("csv", "parquet", "fhir")
EXPORT_TABLES = schema.DATA_TABLES
RESOURCE_TYPES = (
    "Patient",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
)

SAST = dt.timezone(dt.timedelta(hours=2), "SAST")
COPY_BLOCK_BYTES = 8 << 20  # CSV bytes per Parquet row group (about 50k-150k rows)
CURSOR_ROWS = 10_000  # rows per round trip of a FHIR source cursor
PROGRESS_EVERY_ROWS = 5_000

#: how --from/--to select each table's rows: the column holding when a row happened or began,
#: compared by its date in SAST. ``sim_day`` counts days from the run's start date. Tables not
#: listed (reference tables, wards, staff) are exported whole; patients see PATIENT_SOURCES.
TIME_COLUMNS = {
    "bed_requests": "requested_at",
    "admissions": "admitted_at",
    "transfers": "transferred_at",
    "staff_assignments": "starts_on",
    "diagnoses": "sim_day",
    "ward_census": "sim_day",
    "lab_results": "charted_at",
    "vital_signs": "charted_at",
    "prescriptions": "starts_at",
    "procedures": "performed_at",
}
DATE_COLUMNS = {"starts_on"}
#: with --from/--to, patients are those that a row of these tables in the range refers to
PATIENT_SOURCES = ("bed_requests", "admissions", "transfers", "lab_results", "vital_signs", "prescriptions")
ADMISSION_SOURCES = ("diagnoses", "procedures")  # refer to patients through their admission


# --- options ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DateRange:
    """Inclusive dates (SAST); either end may be open."""

    first: dt.date | None = None
    last: dt.date | None = None

    def __bool__(self) -> bool:
        return self.first is not None or self.last is not None

    def instants(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The half-open interval [start, end) of instants the dates cover."""
        start = dt.datetime.combine(self.first, dt.time(), SAST) if self.first else None
        end = dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), SAST) if self.last else None
        return start, end

    def sim_days(self, start_date: dt.date) -> tuple[int | None, int | None]:
        """The inclusive range of simulated day numbers, for a run that began on ``start_date``."""
        first = (self.first - start_date).days if self.first else None
        last = (self.last - start_date).days if self.last else None
        return first, last


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """A validated export request."""

    fmt: str
    out_dir: Path
    names: tuple[str, ...]  # tables (csv, parquet) or resource types (fhir)
    dates: DateRange = DateRange()


def parse_format(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {text!r}; choose from {', '.join(FORMATS)}")
    return fmt


def parse_names(fmt: str, values: Sequence[str]) -> tuple[str, ...]:
    """Tables (csv, parquet) or FHIR resource types (fhir) from repeated or comma-separated
    ``--tables`` values, in export order; all of them when none is given."""
    valid = RESOURCE_TYPES if fmt == "fhir" else EXPORT_TABLES
    asked = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not values:
        return valid
    if not asked:
        raise ConfigError("--tables names nothing; leave it out to export everything")
    by_lower = {name.lower(): name for name in valid}
    unknown = [name for name in asked if name.lower() not in by_lower]
    if unknown:
        what = "resource type" if fmt == "fhir" else "table"
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(valid)}")
    chosen = {by_lower[name.lower()] for name in asked}
    return tuple(name for name in valid if name in chosen)


def parse_date(option: str, text: str | None) -> dt.date | None:
    if text is None or not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date; write YYYY-MM-DD") from None


def parse_range(first: str | None, last: str | None) -> DateRange:
    dates = DateRange(parse_date("--from", first), parse_date("--to", last))
    if dates.first and dates.last and dates.first > dates.last:
        raise ConfigError(f"--from {dates.first} is after --to {dates.last}")
    return dates


def prepare_out_dir(path: Path) -> Path:
    """Create the output folder if needed and prove it is writable."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to {path}: {exc.strerror or exc}") from exc
    return path


def plan(
    fmt: str, out_dir: str | Path, tables: Sequence[str], first: str | None, last: str | None
) -> ExportPlan:
    """Validate every option (before anything connects), and create the output folder."""
    fmt = parse_format(fmt)
    names = parse_names(fmt, tables)
    dates = parse_range(first, last)
    return ExportPlan(fmt, prepare_out_dir(Path(out_dir)), names, dates)


# --- progress and results --------------------------------------------------------------------

#: ``progress(label, estimated_rows)`` -> a context manager yielding ``advance(rows)``
Progress = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]


@dataclasses.dataclass(frozen=True)
class Written:
    """One file an export wrote."""

    name: str
    path: Path
    rows: int
    size_bytes: int
    seconds: float

    def summary(self) -> str:
        what = "resources" if self.path.suffix == ".ndjson" else "rows"
        rate = self.rows / max(self.seconds, 1e-6)
        return (
            f"{self.path}: {self.rows:,} {what}, {self.size_bytes / 1e6:,.1f} MB in {self.seconds:.1f} s"
            f" ({rate:,.0f} {what}/s, {self.size_bytes / 1e6 / max(self.seconds, 1e-6):,.1f} MB/s)"
        )


class ConsoleProgress:
    """A progress bar on a terminal; elsewhere a plain line every ``interval`` seconds."""

    def __init__(self, tty: bool, interval: float = 10.0) -> None:
        self.tty, self.interval = tty, interval

    @contextlib.contextmanager
    def __call__(self, label: str, estimate: int) -> Iterator[Callable[[int], None]]:
        if self.tty:
            with click.progressbar(length=max(estimate, 1), label=f"{label} (~{estimate:,} rows)") as bar:
                yield bar.update
            return
        done, last_report = 0, time.monotonic()

        def advance(rows: int) -> None:
            nonlocal done, last_report
            done += rows
            now = time.monotonic()
            if now - last_report >= self.interval:
                last_report = now
                click.echo(f"{label}: {done:,} rows of about {estimate:,}")

        yield advance


# --- running an export -----------------------------------------------------------------------


def run(
    conn: psycopg.Connection[Any], plan: ExportPlan, progress: Progress, fallback_start: dt.date
) -> Iterator[Written]:
    """Export ``plan`` from ``conn`` in one read-only snapshot, yielding each file written.

    The connection is left read-only and REPEATABLE READ. ``fallback_start`` is the first
    simulated day when the database holds no run yet.
    """
    conn.rollback()  # the snapshot's settings apply from the next transaction on
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute("SET TIME ZONE 'Africa/Johannesburg'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    run_row = conn.execute("SELECT (config->>'start_date')::date FROM simulation").fetchone()
    context = _Context(conn, plan.dates, run_row[0] if run_row and run_row[0] else fallback_start)
    export_one = {"csv": _export_csv, "parquet": _export_parquet, "fhir": _export_fhir}[plan.fmt]
    try:
        for name in plan.names:
            logger.info("exporting %s as %s to %s", name, plan.fmt, plan.out_dir)
            yield export_one(context, name, plan.out_dir, progress)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(f"the export's role may not read everything: {_first_line(exc)}") from exc
    finally:
        conn.rollback()


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
            raise HospitalStreamError(f"{table}: a value Parquet cannot hold: {_first_line(exc)}") from exc
    return Written(table, path, rows, path.stat().st_size, time.monotonic() - started)


# --- FHIR R4 ---------------------------------------------------------------------------------

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
ATC = "http://www.whocc.no/atc"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
# Identifier systems of this hospital. No public naming system exists for them (nor for South
# African ID numbers), so they are URNs of the project's own; a site would put its own here.
SA_ID_SYSTEM = "urn:hospital-stream:id:za-national-id"
PATIENT_ID_SYSTEM = "urn:hospital-stream:id:patient"
WARD_CODE_SYSTEM = "urn:hospital-stream:id:ward-code"
STAFF_ID_SYSTEM = "urn:hospital-stream:id:staff"
STAFFED_BEDS_EXTENSION = "urn:hospital-stream:extension:staffed-beds"

#: admission_type -> (Encounter.class v3-ActCode, Encounter.priority v3-ActPriority)
ENCOUNTER_CLASSES = {
    "EMERGENCY": ("EMER", "emergency", "EM", "emergency"),
    "URGENT": ("IMP", "inpatient encounter", "UR", "urgent"),
    "OBSERVATION": ("OBSENC", "observation encounter", "UR", "urgent"),
    "ELECTIVE": ("IMP", "inpatient encounter", "EL", "elective"),
    "SURGICAL SAME DAY": ("IMP", "inpatient encounter", "EL", "elective"),
}
#: discharge_location -> discharge-disposition code
DISCHARGE_DISPOSITIONS = {
    "HOME": ("home", "Home"),
    "HOME HEALTH CARE": ("home", "Home"),
    "SKILLED NURSING FACILITY": ("snf", "Skilled nursing facility"),
    "REHAB": ("rehab", "Rehabilitation"),
    "TRANSFER TO OTHER HOSPITAL": ("other-hcf", "Other healthcare facility"),
    "AGAINST ADVICE": ("aadvice", "Left against advice"),
    "CHRONIC/LONG TERM ACUTE CARE": ("long", "Long-term care"),
    "DIED": ("exp", "Expired"),
}
INTERPRETATIONS = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high"}
#: vital_signs column -> (id suffix, LOINC codes and names, UCUM code, unit shown)
VITAL_SIGNS = {
    "heart_rate": ("hr", (("8867-4", "Heart rate"),), "/min", "beats/minute"),
    "respiratory_rate": ("rr", (("9279-1", "Respiratory rate"),), "/min", "breaths/minute"),
    "temperature": ("temp", (("8310-5", "Body temperature"),), "Cel", "°C"),
    "spo2": (
        "spo2",
        (
            ("2708-6", "Oxygen saturation in Arterial blood"),
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "%",
        "%",
    ),
}
#: Observations written per vital_signs row: the four above and one blood-pressure panel
OBSERVATIONS_PER_VITAL_SIGNS = len(VITAL_SIGNS) + 1


def _pruned(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` without None, empty strings, lists and objects, which FHIR forbids (a NOT NULL
    text column may still hold ''). Written for speed: it runs on every resource."""
    kept = {}
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            value = _pruned(value)
        elif kind is list:
            value = [
                _pruned(item) if type(item) is dict else item
                for item in value
                if item is not None and item != ""
            ]
            value = [item for item in value if item != {}]
        elif value is None or value == "":
            continue
        if value or value == 0:  # keeps 0 and False
            kept[key] = value
    return kept


F = TypeVar("F", bound=Callable[..., Any])


def _resource_builder(build: F) -> F:
    """Prune what ``build(row, ...)`` returns (one resource or a list of them) when the row holds
    an empty string; the builders themselves leave out what is None or empty otherwise."""

    @functools.wraps(build)
    def wrapper(row: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        built = build(row, *args, **kwargs)
        if "" not in row.values():
            return built
        return [_pruned(r) for r in built] if type(built) is list else _pruned(built)

    return wrapper  # type: ignore[return-value]


def _ref(kind: str, ident: Any) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


def _instant(value: dt.datetime) -> str:
    return value.astimezone(SAST).isoformat()


def _period(start: Any, end: Any) -> dict[str, str]:
    period = {"start": _fhir_time(start)}
    if end is not None:
        period["end"] = _fhir_time(end)
    return period


def _fhir_time(value: dt.date | dt.datetime) -> str:
    return _instant(value) if isinstance(value, dt.datetime) else value.isoformat()


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _number(value: Any) -> int | float:
    """A JSON number for a database number (Decimal included)."""
    return value if isinstance(value, int) else float(value)


def _quantity(value: Any, unit: str | None, code: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": _number(value)}
    if unit:
        quantity["unit"] = unit
    if code:
        quantity.update(system=UCUM, code=code)
    return quantity


def _human_name(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"use": "official", "family": row["last_name"], "given": [row["first_name"]]}]


@_resource_builder
def patient(row: dict[str, Any]) -> dict[str, Any]:
    """A patients row (plus ``died_at`` from admissions) as a FHIR Patient."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row["patient_id"]),
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        _coding(TERMINOLOGY + "v2-0203", "NI", "National unique individual identifier")
                    ],
                    "text": "South African ID number",
                },
                "system": SA_ID_SYSTEM,
                "value": row["national_id"],
            },
            {
                "use": "usual",
                "type": {"coding": [_coding(TERMINOLOGY + "v2-0203", "MR", "Medical record number")]},
                "system": PATIENT_ID_SYSTEM,
                "value": str(row["patient_id"]),
            },
        ],
        "active": True,
        "name": _human_name(row),
        "gender": {"F": "female", "M": "male"}.get(row["sex"], "unknown"),
        "birthDate": row["birth_date"].isoformat(),
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": [row["address"]],
                "city": row["city"],
                "postalCode": row["postal_code"],
                "country": "ZA",
            }
        ],
    }
    if row.get("died_at") is not None:
        resource["deceasedDateTime"] = _instant(row["died_at"])
    return resource


@_resource_builder
def location(row: dict[str, Any]) -> dict[str, Any]:
    """A wards row as a FHIR Location of physical type ward, with its staffed beds."""
    return {
        "resourceType": "Location",
        "id": str(row["ward_id"]),
        "extension": [{"url": STAFFED_BEDS_EXTENSION, "valueInteger": row["beds"]}],
        "identifier": [{"system": WARD_CODE_SYSTEM, "value": row["code"]}],
        "status": "active",
        "name": row["name"],
        "description": f"{row['name']} ({row['specialty']}), {row['beds']} staffed beds",
        "mode": "instance",
        "type": [{"text": row["specialty"]}],
        "physicalType": {"coding": [_coding(TERMINOLOGY + "location-physical-type", "wa", "Ward")]},
    }


@_resource_builder
def practitioner(row: dict[str, Any]) -> dict[str, Any]:
    """A staff row as a FHIR Practitioner (inactive once retired)."""
    return {
        "resourceType": "Practitioner",
        "id": str(row["staff_id"]),
        "identifier": [{"system": STAFF_ID_SYSTEM, "value": str(row["staff_id"])}],
        "active": row["retired_on"] is None,
        "name": _human_name(row),
        "birthDate": row["birth_date"].isoformat(),
    }


@_resource_builder
def practitioner_role(row: dict[str, Any]) -> dict[str, Any]:
    """A staff_assignments row (plus the staff member's role and specialty) as a PractitionerRole."""
    # ends_on is the last day worked; one day before starts_on marks an assignment that never
    # began, which FHIR's period cannot say (its end may not precede its start).
    ends_on = row["ends_on"] if row["ends_on"] is None else max(row["ends_on"], row["starts_on"])
    return {
        "resourceType": "PractitionerRole",
        "id": str(row["assignment_id"]),
        "active": row["ends_on"] is None,
        "period": _period(row["starts_on"], ends_on),
        "practitioner": _ref("Practitioner", row["staff_id"]),
        "code": [{"text": row["role"]}],
        "specialty": [{"text": row["specialty"]}],
        "location": [_ref("Location", row["ward_id"])],
        "availabilityExceptions": f"{row['shift']} shift",
    }


@_resource_builder
def encounter(row: dict[str, Any]) -> dict[str, Any]:
    """An admissions row as a FHIR Encounter, its ward history from ``move_wards`` and
    ``move_times`` (the admission's transfers in time order) and its diagnoses' ``seq``s."""
    class_code, class_name, priority, priority_name = ENCOUNTER_CLASSES.get(
        row["admission_type"], ("IMP", "inpatient encounter", "R", "routine")
    )
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": str(row["admission_id"]),
        "status": (
            "entered-in-error"
            if row.get("cancelled_at") is not None
            else "in-progress"
            if row["discharged_at"] is None
            else "finished"
        ),
        "class": _coding(TERMINOLOGY + "v3-ActCode", class_code, class_name),
        "type": [{"text": row["admission_type"]}],
        "priority": {"coding": [_coding(TERMINOLOGY + "v3-ActPriority", priority, priority_name)]},
        "subject": _ref("Patient", row["patient_id"]),
        "period": _period(row["admitted_at"], row["discharged_at"]),
    }
    seqs = row.get("diagnosis_seqs") or []
    if seqs:
        resource["diagnosis"] = [
            {"condition": _ref("Condition", f"{row['admission_id']}-{seq}"), "rank": seq} for seq in seqs
        ]
    hospitalization: dict[str, Any] = {"admitSource": {"text": row["admission_location"]}}
    if row["discharge_location"]:
        code, name = DISCHARGE_DISPOSITIONS.get(row["discharge_location"], ("oth", "Other"))
        hospitalization["dischargeDisposition"] = {
            "coding": [_coding(TERMINOLOGY + "discharge-disposition", code, name)],
            "text": row["discharge_location"],
        }
    resource["hospitalization"] = hospitalization
    stays = ward_history(
        row["ward_id"],
        row["admitted_at"],
        row["discharged_at"],
        list(
            zip(
                row.get("move_types") or [],
                row.get("move_wards") or [],
                row.get("move_times") or [],
                strict=True,
            )
        ),
    )
    if stays:
        resource["location"] = stays
    return resource


def ward_history(
    admitting_ward: int,
    admitted_at: dt.datetime,
    discharged_at: dt.datetime | None,
    events: list[tuple[str, int | None, dt.datetime]],
) -> list[dict[str, Any]]:
    """Encounter.location from ADT events in time order: (event type, to_ward_id, at), with None
    for a discharge. Each ward's period runs from the event that moved the patient in to the next
    event; without events, the admitting ward holds the whole stay.

    A cancellation (A11, A12, A13) removes the event it cancels, as HL7 means it: the encounter
    shows the corrected history (a cancelled admission is the Encounter's entered-in-error
    status, not a location)."""
    moves: list[tuple[int | None, dt.datetime]] = []
    for event, ward, at in events:
        if event.startswith("cancel_"):
            del moves[-1:]
        else:
            moves.append((ward, at))
    if not events:
        moves = [(admitting_ward, admitted_at)]
    stays: list[dict[str, Any]] = []
    for ward, at in moves:
        if stays and "end" not in stays[-1]["period"]:
            stays[-1]["period"]["end"] = _instant(at)
            stays[-1]["status"] = "completed"
        if ward is not None:
            stays.append(
                {"location": _ref("Location", ward), "status": "active", "period": _period(at, None)}
            )
    if stays and discharged_at is not None and "end" not in stays[-1]["period"]:
        stays[-1]["period"]["end"] = _instant(discharged_at)
        stays[-1]["status"] = "completed"
    return stays


@_resource_builder
def condition(row: dict[str, Any]) -> dict[str, Any]:
    """A diagnoses row (plus its admission's patient and time) as a FHIR Condition."""
    code: dict[str, Any] = {"coding": [_coding(ICD10, row["icd10_code"], row.get("description"))]}
    if row.get("description"):
        code["text"] = row["description"]
    return {
        "resourceType": "Condition",
        "id": f"{row['admission_id']}-{row['seq']}",
        "verificationStatus": {"coding": [_coding(TERMINOLOGY + "condition-ver-status", "confirmed")]},
        "category": [
            {
                "coding": [
                    _coding(TERMINOLOGY + "condition-category", "encounter-diagnosis", "Encounter Diagnosis")
                ]
            }
        ],
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "recordedDate": _instant(row["admitted_at"]),
    }


def _observation(
    ident: str, category: str, row: dict[str, Any], code: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "category": [
            {
                "coding": [
                    _coding(
                        TERMINOLOGY + "observation-category", category, category.replace("-", " ").title()
                    )
                ]
            }
        ],
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "effectiveDateTime": _instant(row["charted_at"]),
        **fields,
    }


@_resource_builder
def lab_observation(row: dict[str, Any]) -> dict[str, Any]:
    """A lab_results row (plus its lab_tests name, unit and reference range) as an Observation."""
    name, unit = row.get("name"), row.get("unit")
    code: dict[str, Any] = {"coding": [_coding(LOINC, row["test_code"], name)]}
    if name:
        code["text"] = name
    fields: dict[str, Any] = {"valueQuantity": _quantity(row["value"], unit)}
    if row.get("ref_low") is not None and row.get("ref_high") is not None:
        fields["referenceRange"] = [
            {"low": _quantity(row["ref_low"], unit), "high": _quantity(row["ref_high"], unit)}
        ]
    flag = row["flag"]
    fields["interpretation"] = [
        {"coding": [_coding(TERMINOLOGY + "v3-ObservationInterpretation", flag, INTERPRETATIONS.get(flag))]}
    ]
    return _observation(f"lab-{row['lab_result_id']}", "laboratory", row, code, **fields)


@_resource_builder
def vital_observations(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A vital_signs row as FHIR vital-signs Observations: heart rate, respiratory rate,
    temperature, SpO2, and a blood-pressure panel with systolic and diastolic components."""
    ident = row["vital_sign_id"]
    found = []
    for column, (suffix, codes, ucum, unit) in VITAL_SIGNS.items():
        code = {"coding": [_coding(LOINC, c, n) for c, n in codes], "text": codes[0][1]}
        found.append(
            _observation(
                f"vs-{ident}-{suffix}",
                "vital-signs",
                row,
                code,
                valueQuantity=_quantity(row[column], unit, ucum),
            )
        )
    components = [
        {
            "code": {"coding": [_coding(LOINC, c, n)], "text": n},
            "valueQuantity": _quantity(row[column], "mmHg", "mm[Hg]"),
        }
        for column, c, n in (
            ("systolic_bp", "8480-6", "Systolic blood pressure"),
            ("diastolic_bp", "8462-4", "Diastolic blood pressure"),
        )
    ]
    panel: dict[str, Any] = {
        "coding": [_coding(LOINC, "85354-9", "Blood pressure panel with all children optional")],
        "text": "Blood pressure",
    }
    found.append(_observation(f"vs-{ident}-bp", "vital-signs", row, panel, component=components))
    return found


@_resource_builder
def medication_request(row: dict[str, Any], as_of: dt.datetime) -> dict[str, Any]:
    """A prescriptions row (plus its medicines name) as a MedicationRequest; active while its
    stop lies after ``as_of`` (the end of the last stored simulated day)."""
    dose = f"{_number(row['dose_value']):g}"
    return {
        "resourceType": "MedicationRequest",
        "id": str(row["prescription_id"]),
        "status": "active" if row["stops_at"] > as_of else "completed",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [_coding(ATC, row["medicine_code"], row.get("name"))],
            "text": row["drug"],
        },
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "authoredOn": _instant(row["starts_at"]),
        "dosageInstruction": [
            {
                "text": " ".join(filter(None, (dose, row["dose_unit"], row["route"], row["frequency"]))),
                "timing": {"code": {"text": row["frequency"]}},
                "route": {"text": row["route"]},
                "doseAndRate": [{"doseQuantity": _quantity(row["dose_value"], row["dose_unit"])}],
            }
        ],
        "dispenseRequest": {"validityPeriod": _period(row["starts_at"], row["stops_at"])},
    }


@_resource_builder
def procedure(row: dict[str, Any]) -> dict[str, Any]:
    """A procedures row (plus its admission's patient and the code's description) as a Procedure."""
    code: dict[str, Any] = {"coding": [_coding(ICD10_PCS, row["procedure_code"], row.get("description"))]}
    if row.get("description"):
        code["text"] = row["description"]
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": f"{row['admission_id']}-{row['seq']}",
        "status": "completed",
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "performedDateTime": _instant(row["performed_at"]),
    }
    if row.get("category"):
        resource["category"] = {"text": row["category"]}
    return resource


@dataclasses.dataclass(frozen=True)
class _Source:
    table: str
    query: str  # {where} is the --from/--to condition on alias x
    build: Callable[[dict[str, Any], dt.datetime], Iterable[dict[str, Any]]]


FHIR_SOURCES: dict[str, tuple[_Source, ...]] = {
    "Patient": (
        _Source(
            "patients",
            "SELECT x.*, d.died_at FROM patients x LEFT JOIN ("
            " SELECT patient_id, max(died_at) AS died_at FROM admissions WHERE died_at IS NOT NULL"
            " GROUP BY patient_id) d ON d.patient_id = x.patient_id"
            " WHERE {where} ORDER BY x.patient_id",
            lambda row, _: [patient(row)],
        ),
    ),
    "Location": (
        _Source("wards", "SELECT x.* FROM wards x ORDER BY x.ward_id", lambda row, _: [location(row)]),
    ),
    "Practitioner": (
        _Source("staff", "SELECT x.* FROM staff x ORDER BY x.staff_id", lambda row, _: [practitioner(row)]),
    ),
    "PractitionerRole": (
        _Source(
            "staff_assignments",
            "SELECT x.*, s.role, s.specialty FROM staff_assignments x JOIN staff s ON s.staff_id = x.staff_id"
            " WHERE {where} ORDER BY x.assignment_id",
            lambda row, _: [practitioner_role(row)],
        ),
    ),
    "Encounter": (
        _Source(
            "admissions",
            "SELECT x.*, m.move_types, m.move_wards, m.move_times, g.diagnosis_seqs FROM admissions x"
            " LEFT JOIN LATERAL (SELECT"
            "  array_agg(t.event_type ORDER BY t.transferred_at, t.transfer_id) AS move_types,"
            "  array_agg(t.to_ward_id ORDER BY t.transferred_at, t.transfer_id) AS move_wards,"
            "  array_agg(t.transferred_at ORDER BY t.transferred_at, t.transfer_id) AS move_times"
            "  FROM transfers t WHERE t.admission_id = x.admission_id) m ON true"
            " LEFT JOIN LATERAL (SELECT array_agg(d.seq ORDER BY d.seq) AS diagnosis_seqs"
            "  FROM diagnoses d WHERE d.admission_id = x.admission_id) g ON true"
            " WHERE {where} ORDER BY x.admission_id",
            lambda row, _: [encounter(row)],
        ),
    ),
    "Condition": (
        _Source(
            "diagnoses",
            "SELECT x.*, a.patient_id, a.admitted_at, c.description FROM diagnoses x"
            " JOIN admissions a ON a.admission_id = x.admission_id"
            " LEFT JOIN icd10_codes c ON c.icd10_code = x.icd10_code"
            " WHERE {where} ORDER BY x.admission_id, x.seq",
            lambda row, _: [condition(row)],
        ),
    ),
    "Observation": (
        _Source(
            "lab_results",
            "SELECT x.*, t.name, t.unit, t.ref_low, t.ref_high FROM lab_results x"
            " LEFT JOIN lab_tests t ON t.test_code = x.test_code WHERE {where} ORDER BY x.lab_result_id",
            lambda row, _: [lab_observation(row)],
        ),
        _Source(
            "vital_signs",
            "SELECT x.* FROM vital_signs x WHERE {where} ORDER BY x.vital_sign_id",
            lambda row, _: vital_observations(row),
        ),
    ),
    "MedicationRequest": (
        _Source(
            "prescriptions",
            "SELECT x.*, m.name FROM prescriptions x"
            " LEFT JOIN medicines m ON m.medicine_code = x.medicine_code"
            " WHERE {where} ORDER BY x.prescription_id",
            lambda row, as_of: [medication_request(row, as_of)],
        ),
    ),
    "Procedure": (
        # procedures carry no foreign key: one whose admission is not stored is left out
        _Source(
            "procedures",
            "SELECT x.*, a.patient_id, c.description, c.category FROM procedures x"
            " JOIN admissions a ON a.admission_id = x.admission_id"
            " LEFT JOIN procedure_codes c ON c.procedure_code = x.procedure_code"
            " WHERE {where} ORDER BY x.admission_id, x.seq",
            lambda row, _: [procedure(row)],
        ),
    ),
}


def _export_fhir(context: _Context, resource_type: str, out_dir: Path, progress: Progress) -> Written:
    started, written = time.monotonic(), 0
    path = out_dir / f"{resource_type}.ndjson"
    sources = FHIR_SOURCES[resource_type]
    queries = [sql.SQL(s.query).format(where=context.where(s.table)) for s in sources]  # type: ignore[arg-type]
    as_of = _as_of(context)
    dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
    estimate = sum(context.estimate(q) for q in queries)
    with progress(resource_type, estimate) as advance, _atomic_file(path, "w") as handle:
        for source, query in zip(sources, queries, strict=True):
            pending = 0
            with context.conn.cursor(name=f"export_{source.table}", row_factory=dict_row) as cur:
                cur.itersize = CURSOR_ROWS
                cur.execute(query)
                for row in cur:
                    for resource in source.build(row, as_of):
                        handle.write(dumps(resource))
                        handle.write("\n")
                        written += 1
                    pending += 1
                    if pending == PROGRESS_EVERY_ROWS:
                        advance(pending)
                        pending = 0
            advance(pending)
    return Written(resource_type, path, written, path.stat().st_size, time.monotonic() - started)


def _as_of(context: _Context) -> dt.datetime:
    """The simulated clock: the end of the last complete stored day."""
    day = db.last_complete_day(context.conn)
    return dt.datetime.combine(context.start_date + dt.timedelta(days=day + 1), dt.time(), SAST)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
