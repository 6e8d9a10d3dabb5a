"""Is generation ever the bottleneck? The simulator against PostgreSQL's own COPY of its rows.

``python -m benchmarks.bench_sim [--days N] [--beds B] [--population P] [--seed S] [--keep]
[--json PATH] [--profile]``

1. Generation, timed the way the pipeline's generator runs it: ``sim.Hospital(config)`` once,
   then for each of days 0..N ``Hospital.simulate_day`` and ``generator.encode_day`` (COPY text
   in 5,000-row chunks, chunk headers with digests, the day's closing message with its
   checkpoint). Outside the timing, each chunk's COPY text is spooled to one file per phase
   (day 0, days 1..N) and table, so a long run does not hold every day in memory.
2. A bare COPY of exactly those files into a fresh embedded PostgreSQL (own temporary
   ``HOSPITAL_HOME``, free port, migrated): one ``COPY ... FROM STDIN`` per table and phase, one
   transaction per phase, timed from BEGIN to COMMIT. Insert-mode tables go straight into their
   tables, with their indexes, constraints and foreign keys. The tables the sink merges or
   updates (``transfers``, ``admission_discharges``, ``staff_assignment_ends``,
   ``staff_retirements``) are copied into TEMP staging tables of their columns, as the sink
   does; their merge/UPDATE into the real tables runs afterwards, untimed, so that the final
   database holds what the pipeline would store.
3. The ratio of the two rates (rows/s), the database's size and the bytes a simulated day adds.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as dt
import io
import json
import os
import pstats
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from benchmarks import common
from benchmarks.common import (
    MB,
    add_hospital_arguments,
    hospital_settings,
    loadavg,
    non_negative_int,
    num,
    rate,
    stack_settings,
    traversable_tempdir,
)
from hospital_stream import db, schema, sim
from hospital_stream.devstack import stack
from hospital_stream.schema import TABLES
from hospital_stream.settings import Settings
from hospital_stream.wire.batch import encode_day, parse_batch_message

RUN_ID = "bench-sim"
COPY_BLOCK = 1 << 20
DEFAULT_DAYS = 30
STAGE_PREFIX = "bench_stage_"
#: the spool's file of every message header (and each day's checkpoint, in hex)
LEDGER = "ledger.jsonl"


# --- figures --------------------------------------------------------------------------------------


@dataclasses.dataclass
class TableFigures:
    """One table's rows and COPY-text bytes in a phase, and how long its COPY took."""

    rows: int = 0
    bytes: int = 0
    copy_seconds: float = 0.0


@dataclasses.dataclass
class Phase:
    """Day 0 or days 1..N: what was generated, and how long generating and copying it took."""

    name: str
    first_day: int
    days: int
    simulate_seconds: float = 0.0
    encode_seconds: float = 0.0
    #: BEGIN to COMMIT of the phase's COPY statements
    copy_seconds: float = 0.0
    #: merging/updating the staged tables into their targets afterwards (not in the ratio)
    apply_seconds: float = 0.0
    tables: dict[str, TableFigures] = dataclasses.field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    @property
    def generation_seconds(self) -> float:
        return self.simulate_seconds + self.encode_seconds


@dataclasses.dataclass
class Report:
    """Everything one run measured."""

    seed: int
    beds: int
    population: int
    days: int
    start_date: str
    construction_seconds: float = 0.0
    phases: list[Phase] = dataclasses.field(default_factory=list)
    postgres_version: str = ""
    database_bytes_after_day0: int = 0
    database_bytes: int = 0
    cpus: int = 0
    load_start: str = ""
    load_end: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)


def ratios(report: Report) -> dict[str, float]:
    """Generation rate / COPY rate in rows/s, per phase and overall (above 1: generation is faster).

    The overall generation time includes building ``sim.Hospital``; the phases' do not.
    """
    out = {
        phase.name: rate(phase.rows, phase.generation_seconds) / rate(phase.rows, phase.copy_seconds)
        for phase in report.phases
    }
    rows = sum(p.rows for p in report.phases)
    generation = report.construction_seconds + sum(p.generation_seconds for p in report.phases)
    copy = sum(p.copy_seconds for p in report.phases)
    out["overall"] = rate(rows, generation) / rate(rows, copy)
    return out


def bytes_per_day(report: Report) -> float:
    """What a simulated day of hospital records (days 1..N) adds to the database."""
    return rate(report.database_bytes - report.database_bytes_after_day0, report.days)


def summary(report: Report) -> dict[str, Any]:
    """The report as JSON-ready figures (rates included; a rate of nothing timed is null)."""
    phases = []
    for phase in report.phases:
        phases.append(
            {
                "name": phase.name,
                "first_day": phase.first_day,
                "days": phase.days,
                "rows": phase.rows,
                "bytes": phase.bytes,
                "generation": {
                    "simulate_seconds": phase.simulate_seconds,
                    "encode_seconds": phase.encode_seconds,
                    "seconds": phase.generation_seconds,
                    "rows_per_second": rate(phase.rows, phase.generation_seconds),
                    "mb_per_second": rate(phase.bytes / MB, phase.generation_seconds),
                },
                "copy": {
                    "seconds": phase.copy_seconds,
                    "rows_per_second": rate(phase.rows, phase.copy_seconds),
                    "mb_per_second": rate(phase.bytes / MB, phase.copy_seconds),
                    "apply_staged_seconds": phase.apply_seconds,
                },
                "tables": {
                    name: {
                        **dataclasses.asdict(t),
                        "rows_per_day": t.rows / phase.days,
                        "bytes_per_day": t.bytes / phase.days,
                        "copy_rows_per_second": rate(t.rows, t.copy_seconds),
                        "copy_into": copy_target(name),
                    }
                    for name, t in phase.tables.items()
                },
            }
        )
    return {
        "hospital": {
            "seed": report.seed,
            "beds": report.beds,
            "population": report.population,
            "days_after_day_0": report.days,
            "start_date": report.start_date,
        },
        "machine": {
            "cpus": report.cpus,
            "loadavg_start": report.load_start,
            "loadavg_end": report.load_end,
            "postgres_version": report.postgres_version,
        },
        "construction_seconds": report.construction_seconds,
        "phases": phases,
        "ratio_generation_over_copy_rows_per_second": ratios(report),
        "database": {
            "bytes_after_day_0": report.database_bytes_after_day0,
            "bytes": report.database_bytes,
            "bytes_per_simulated_day": bytes_per_day(report),
        },
        "notes": report.notes,
    }


def to_json(report: Report) -> str:
    """The summary as strict JSON text."""
    return common.to_json(summary(report))


def copy_target(table: str) -> str:
    """Where the bare COPY puts a batch table's rows."""
    spec = TABLES[table]
    if spec.mode == "insert":
        return spec.target
    then = "INSERT into transfers" if spec.mode == "merge_transfers" else f"UPDATE {spec.target}"
    return f"TEMP stage, then {then}"


# --- the report -----------------------------------------------------------------------------------


def format_report(report: Report) -> str:
    """The figures as a plain-text table."""
    end = _date_plus(report.start_date, report.days)
    lines = [
        f"bench-sim: seed {report.seed}, {report.beds:,} beds, population {report.population:,}, "
        f"days 0..{report.days} ({report.start_date}..{end}); MB = 10^6 bytes of COPY text",
        f"machine: {report.cpus} CPUs, load average {report.load_start} at start, "
        f"{report.load_end} at end; PostgreSQL {report.postgres_version or '?'}",
        f"sim.Hospital(config): {report.construction_seconds:.2f} s (in the overall ratio only)",
        "",
        "generation: Hospital.simulate_day + generator.encode_day (COPY text in 5,000-row chunks)",
        f"{'phase':<12}{'rows':>12}{'MB':>10}{'simulate s':>12}{'encode s':>10}{'total s':>10}"
        f"{'rows/s':>12}{'MB/s':>9}",
    ]
    for p in report.phases:
        seconds = p.generation_seconds
        lines.append(
            f"{p.name:<12}{p.rows:>12,}{p.bytes / MB:>10.2f}{p.simulate_seconds:>12.2f}"
            f"{p.encode_seconds:>10.2f}{seconds:>10.2f}"
            f"{num(rate(p.rows, seconds)):>12}{num(rate(p.bytes / MB, seconds), 2):>9}"
        )
    lines += [
        "",
        "bare COPY into a fresh PostgreSQL: one COPY FROM STDIN per table and phase, one transaction",
        "per phase (BEGIN..COMMIT timed); transfers and the update tables into TEMP staging tables",
        f"{'phase':<12}{'rows':>12}{'MB':>10}{'COPY s':>10}{'rows/s':>12}{'MB/s':>9}{'apply staged s':>16}",
    ]
    for p in report.phases:
        lines.append(
            f"{p.name:<12}{p.rows:>12,}{p.bytes / MB:>10.2f}{p.copy_seconds:>10.2f}"
            f"{num(rate(p.rows, p.copy_seconds)):>12}{num(rate(p.bytes / MB, p.copy_seconds), 2):>9}"
            f"{p.apply_seconds:>16.2f}"
        )
    lines += ["", "ratio generation / COPY (rows/s; 3 or more: generation is never the bottleneck)"]
    for name, value in ratios(report).items():
        label = f"{name} (with Hospital())" if name == "overall" else name
        lines.append(f"{label:<28}{num(value, 2):>8}")
    steady = next((p for p in report.phases if p.first_day > 0), None)
    if steady is not None:
        lines += [
            "",
            f"{steady.name}: per table, a day on average",
            f"{'table':<24}{'rows/day':>10}{'KB/day':>10}{'COPY rows/s':>13}  into",
        ]
        for name, t in steady.tables.items():
            lines.append(
                f"{name:<24}{t.rows / steady.days:>10,.1f}{t.bytes / steady.days / 1000:>10.1f}"
                f"{num(rate(t.rows, t.copy_seconds)):>13}  {copy_target(name)}"
            )
        lines.append(
            f"{'all':<24}{steady.rows / steady.days:>10,.1f}{steady.bytes / steady.days / 1000:>10.1f}"
        )
    lines += [
        "",
        f"database: {report.database_bytes_after_day0 / MB:,.1f} MB after day 0, "
        f"{report.database_bytes / MB:,.1f} MB after day {report.days}; "
        f"hospital records: {num(bytes_per_day(report) / MB, 2)} MB per simulated day",
        *report.notes,
    ]
    return "\n".join(lines)


def _date_plus(start: str, days: int) -> str:
    return (dt.date.fromisoformat(start) + dt.timedelta(days=days)).isoformat()


# --- step 1: generation ---------------------------------------------------------------------------


@dataclasses.dataclass
class Generation:
    hospital: sim.Hospital
    construction_seconds: float
    phases: list[Phase]
    #: the state after day 0, to simulate days 1..N again (for the profile)
    day0_state: sim.HospitalState


def spool_path(spool: Path, phase: Phase, table: str) -> Path:
    return spool / f"day{phase.first_day}" / f"{table}.copy"


def generate(
    config: sim.HospitalConfig,
    days: int,
    spool: Path,
    progress: Callable[[str], None] = lambda line: None,
) -> Generation:
    """Simulate and encode days 0..``days`` as the generator does; spool the COPY text untimed."""
    t0 = time.perf_counter()
    hospital = sim.Hospital(config)
    construction = time.perf_counter() - t0
    phases = [Phase("day 0", 0, 1)]
    if days:
        phases.append(Phase(f"days 1..{days}", 1, days))
    state = sim.HospitalState()
    day0_state = state
    files: dict[Path, IO[bytes]] = {}
    try:
        for day in range(days + 1):
            phase = phases[min(day, 1)]
            t0 = time.perf_counter()
            records = hospital.simulate_day(state, day)
            t1 = time.perf_counter()
            messages = encode_day(RUN_ID, records)
            t2 = time.perf_counter()
            phase.simulate_seconds += t1 - t0
            phase.encode_seconds += t2 - t1
            state = records.state
            if day == 0:
                day0_state = state
            for name in records.tables:
                phase.tables.setdefault(name, TableFigures())
            _spool(messages, phase, spool, files)
            if day == 0 or day % 10 == 0 or day == days:
                progress(f"generated day {day} of {days} ({t2 - t0:.2f} s)")
    finally:
        for handle in files.values():
            handle.close()
    return Generation(hospital, construction, phases, day0_state)


def _spool(messages: Sequence[bytes], phase: Phase, spool: Path, files: dict[Path, IO[bytes]]) -> None:
    """Each chunk's rows to its table's file; every header, and the closing message's checkpoint,
    to the ledger (what ``--keep`` stores as the sink's bookkeeping)."""
    ledger = files.get(spool / LEDGER)
    if ledger is None:
        spool.mkdir(parents=True, exist_ok=True)
        ledger = files[spool / LEDGER] = (spool / LEDGER).open("wb")
    for message in messages:
        head, _, payload = message.partition(b"\n")
        header = json.loads(head)
        if header["kind"] == "day":
            ledger.write(head + b"\t" + payload.hex().encode() + b"\n")
            continue
        ledger.write(head + b"\n")
        payload = parse_batch_message(message).payload  # the plain COPY text
        figures = phase.tables.setdefault(header["table"], TableFigures())
        figures.rows += header["rows"]
        figures.bytes += len(payload)
        path = spool_path(spool, phase, header["table"])
        handle = files.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = files[path] = path.open("wb")
        handle.write(payload)


def profile_days(hospital: sim.Hospital, state: sim.HospitalState, days: int, top: int = 10) -> str:
    """cProfile of simulating and encoding days 1..``days`` again: the top functions by own time
    and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for day in range(1, days + 1):
        records = hospital.simulate_day(state, day)
        encode_day(RUN_ID, records)
        state = records.state
    profiler.disable()
    out = io.StringIO()
    for order in ("tottime", "cumulative"):
        out.write(f"--- cProfile of days 1..{days} (simulate_day + encode_day), top {top} by {order}\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(top)
    return out.getvalue()


# --- step 2: the bare COPY ------------------------------------------------------------------------


def _stage_name(table: str) -> str:
    return STAGE_PREFIX + table


def copy_phase(conn: psycopg.Connection[Any], phase: Phase, spool: Path) -> None:
    """COPY a phase's spooled text in one timed transaction, then apply the staged tables."""
    order = [name for name in schema.TABLE_ORDER if name in phase.tables]
    order += [name for name in phase.tables if name not in order]
    staged = [name for name in order if TABLES[name].mode != "insert"]
    for name in staged:
        spec = TABLES[name]
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(_stage_name(name)),
                sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
                sql.Identifier(spec.target),
            )
        )
    payloads = {
        name: spool_path(spool, phase, name).read_bytes() for name in order if phase.tables[name].rows
    }
    started = time.perf_counter()
    with conn.transaction():
        for name, payload in payloads.items():
            spec = TABLES[name]
            target = _stage_name(name) if name in staged else spec.target
            query = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, spec.columns))
            )
            t0 = time.perf_counter()
            view = memoryview(payload)
            with conn.cursor() as cur:
                with cur.copy(query) as copy:
                    for at in range(0, len(view), COPY_BLOCK):
                        copy.write(view[at : at + COPY_BLOCK])
                copied = cur.rowcount
            phase.tables[name].copy_seconds = time.perf_counter() - t0
            if copied != phase.tables[name].rows:
                raise RuntimeError(f"{name}: COPY stored {copied} rows, generated {phase.tables[name].rows}")
    phase.copy_seconds = time.perf_counter() - started
    del payloads
    started = time.perf_counter()
    with conn.transaction():
        for name in staged:
            _apply_staged(conn, name, phase.tables[name].rows)
    phase.apply_seconds = time.perf_counter() - started


def _apply_staged(conn: psycopg.Connection[Any], name: str, rows: int) -> None:
    """Move a staged table's rows into its target as the sink would (a fresh database: no
    transfer was streamed, so the merge only inserts)."""
    spec = TABLES[name]
    stage = sql.Identifier(_stage_name(name))
    columns = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    if spec.mode == "merge_transfers":
        cur = conn.execute(
            sql.SQL("INSERT INTO {} ({}, seen_in_batch) SELECT {}, true FROM {}").format(
                sql.Identifier(spec.target), columns, columns, stage
            )
        )
    else:
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in spec.columns if c not in spec.key
        )
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(c)) for c in spec.key)
        cur = conn.execute(
            sql.SQL("UPDATE {} t SET {} FROM {} s WHERE {}").format(
                sql.Identifier(spec.target), assignments, stage, match
            )
        )
    if cur.rowcount != rows:
        raise RuntimeError(f"{name}: {cur.rowcount} of {rows} staged rows reached {spec.target}")
    conn.execute(sql.SQL("TRUNCATE {}").format(stage))


#: every ward's end-of-day occupancy, replayed from the transfers (what the occupancy agent sends)
CENSUS_FROM_TRANSFERS = """
    INSERT INTO ward_census (sim_day, ward_id, occupied)
    SELECT d.sim_day, w.ward_id,
           sum(coalesce(m.delta, 0)) OVER (PARTITION BY w.ward_id ORDER BY d.sim_day)
    FROM sim_days d CROSS JOIN wards w
    LEFT JOIN (
        SELECT sim_day, ward_id, sum(delta) AS delta FROM (
            SELECT sim_day, to_ward_id AS ward_id, 1 AS delta FROM transfers WHERE to_ward_id IS NOT NULL
            UNION ALL
            SELECT sim_day, from_ward_id, -1 FROM transfers WHERE from_ward_id IS NOT NULL) moves
        GROUP BY sim_day, ward_id) m ON m.sim_day = d.sim_day AND m.ward_id = w.ward_id
"""


def store_bookkeeping(conn: psycopg.Connection[Any], config: sim.HospitalConfig, spool: Path) -> None:
    """What the pipeline stores besides the rows, so that ``validate`` and the dashboard accept
    the kept database: the run, the chunk ledger, every day closed with its checkpoint and
    completed, and the end-of-day census (from the transfers, as the occupancy agent counts it)."""
    chunks, days = [], []
    with (spool / LEDGER).open("rb") as ledger:
        for line in ledger:
            head, _, checkpoint = line.rstrip(b"\n").partition(b"\t")
            h = json.loads(head)
            if h["kind"] == "day":
                days.append(
                    (
                        h["day"],
                        h["date"],
                        h["chunks"],
                        json.dumps(h["row_counts"]),
                        bytes.fromhex(checkpoint.decode()),
                    )
                )
            else:
                chunks.append((h["day"], h["seq"], h["table"], h["rows"]))
    with conn.transaction():
        db.ensure_run(conn, RUN_ID, config.to_json())
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ingested_chunks (sim_day, seq, table_name, row_count) VALUES (%s, %s, %s, %s)",
                chunks,
            )
            cur.executemany(
                "INSERT INTO sim_days (sim_day, sim_date, chunks, row_counts, checkpoint, completed_at)"
                " VALUES (%s, %s, %s, %s, %s, now())",
                days,
            )
        conn.execute(CENSUS_FROM_TRANSFERS)
    conn.execute("ANALYZE")


def database_bytes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


# --- the command ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_sim",
        description="Time the simulator and a bare PostgreSQL COPY of its output; print both rates "
        "and their ratio. The hospital comes from the HOSPITAL_* variables unless overridden.",
    )
    parser.add_argument(
        "--days", type=non_negative_int, default=DEFAULT_DAYS, help="days after day 0 (default 30)"
    )
    add_hospital_arguments(parser)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the benchmark's PostgreSQL running and its home in place, with the run, chunks, "
        "closed days and census the pipeline would store (validate and the dashboard accept it)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, simulate days 1..N again under cProfile and print the top 10 functions",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = hospital_settings(args)
    config = sim.HospitalConfig.from_settings(settings)
    report = Report(
        seed=config.seed,
        beds=config.beds,
        population=config.population,
        days=args.days,
        start_date=config.start_date.isoformat(),
        cpus=os.cpu_count() or 0,
        load_start=loadavg(),
    )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # PostgreSQL may run as an unprivileged user, which must reach its data folder
    base = traversable_tempdir("hospital-stream-bench-")
    spool = base / "spool"
    pg: Settings | None = None
    try:
        generation = generate(config, args.days, spool, progress)
        report.construction_seconds = generation.construction_seconds
        report.phases = generation.phases
        pg = stack_settings(base / "home")
        progress(f"starting PostgreSQL in {pg.home} on port {pg.database_address[1]}")
        stack.up(pg, only=["postgres"])
        db.migrate(pg.admin_url)
        with db.connect(pg.admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            report.postgres_version = str(row[0]) if row else ""
            for phase in report.phases:
                progress(f"COPY {phase.name}: {phase.rows:,} rows")
                copy_phase(conn, phase, spool)
                if phase.first_day == 0:
                    report.database_bytes_after_day0 = database_bytes(conn)
            report.database_bytes = database_bytes(conn)
            if args.keep:
                progress("storing the run, the chunk ledger, the closed days and the census (--keep)")
                store_bookkeeping(conn, config, spool)
        shutil.rmtree(spool, ignore_errors=True)
        report.load_end = loadavg()
        print(format_report(report), flush=True)
        if args.json:
            args.json.write_text(to_json(report))
            progress(f"wrote {args.json}")
        if args.profile and args.days:
            print()
            print(profile_days(generation.hospital, generation.day0_state, args.days), flush=True)
    finally:
        if args.keep and pg is not None:
            progress(
                f"kept PostgreSQL at {pg.admin_url} (home {pg.home}); stop it with "
                f"HOSPITAL_HOME={pg.home} hospital-stream stack down, then rm -r {base}"
            )
        else:
            if pg is not None:
                stack.down(pg)
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
