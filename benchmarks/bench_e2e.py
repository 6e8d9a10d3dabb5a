"""The whole pipeline at max speed against a bare COPY of the rows it stored, in one run.

``python -m benchmarks.bench_e2e [--days N | --full] [--beds B] [--population P] [--seed S]
[--latency-days D] [--latency-speed X] [--schema-at V] [--json PATH] [--keep]``

1. An embedded stack of its own (temporary ``HOSPITAL_HOME``, free ports), started here so that
   its broker and PostgreSQL can be measured apart from the worker.
2. ``hospital-stream run --days N+1 --speed max``: day 0 and N days through the real pipeline
   (simulator -> broker -> agents and tables -> sink -> PostgreSQL). Every 0.5 s the peak memory
   of the worker, the broker and PostgreSQL is sampled and the worker's ``/metrics`` scraped
   (the per-stage seconds come from its last scrape), with the CPU seconds of each one's
   process tree. The end-to-end time of day 0 and days 1..N is read from
   ``sim_days.completed_at``.
3. A bare COPY of exactly the rows that run stored (``COPY (SELECT ...) TO STDOUT``, spooled,
   untimed) into a fresh database of the same PostgreSQL, migrated like the run's: into its
   tables (the same schema: keys, checks, indexes, foreign keys, and the national id index
   built after day 0's patients as the sink builds it), and into plain heap tables of the same
   columns with no key, constraint or index (the heap floor); with ``--schema-at V`` also into
   a database migrated only up to migration V. One COPY per table, one transaction per phase
   (day 0, days 1..N) and target, each table's COPY timed.
4. ``hospital-stream run --days D --speed X``: a short fast-clock run after it, for the
   latency histograms (a streamed transfer's send -> its commit in PostgreSQL, -> its ward's
   entry in the occupancy table) and how late the slots went out.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from benchmarks.common import (
    MB,
    add_hospital_arguments,
    hospital_settings,
    loadavg,
    num,
    positive_int,
    rate,
    stack_settings,
    to_json,
    traversable_tempdir,
)
from hospital_stream import db, schema
from hospital_stream.devstack import stack
from hospital_stream.metrics import STAGES
from hospital_stream.settings import Settings

DEFAULT_DAYS = 200
SAMPLE_SECONDS = 0.5
COPY_BLOCK = 1 << 20
BIN = Path(sys.executable).parent


# --- sampling the processes and the worker's metrics ----------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, ...); empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared memory counted once across PostgreSQL's processes."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return _status(pid).get("VmRSS", 0)


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(_children(out[-1]))
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid``'s process tree so far: each live process's own
    (utime, stime) and its reaped children's (cutime, cstime) from /proc/PID/stat, so a
    PostgreSQL backend that has exited still counts, through the postmaster."""
    ticks = 0
    for member in _tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue  # gone since it was listed: its parent reaps it into its own c-times
        fields = stat.rpartition(")")[2].split()  # after the command, which may hold spaces
        ticks += sum(int(f) for f in fields[11:15])  # fields 14..17: utime stime cutime cstime
    return ticks / CLOCK_TICKS


#: the processes whose memory and CPU a run measures
PROCESSES = ("worker", "broker", "postgres")


@dataclasses.dataclass
class Sampled:
    """Peaks seen while a run went on, CPU seconds, and the worker's last metrics."""

    worker_peak_kb: int = 0
    broker_peak_kb: int = 0
    postgres_peak_kb: int = 0
    metrics: str = ""
    #: CPU seconds of each process tree (PROCESSES) at the run's start and at its last sample
    cpu_start: dict[str, float] = dataclasses.field(default_factory=dict)
    cpu_last: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def cpu_seconds(self) -> dict[str, float]:
        """The CPU seconds each process tree spent during the run."""
        return {name: self.cpu_last.get(name, math.nan) - self.cpu_start.get(name, 0.0) for name in PROCESSES}


class Sampler(threading.Thread):
    """Every SAMPLE_SECONDS: the worker's (``run``'s child's) and the broker's peak RSS, the sum
    of PostgreSQL's processes' PSS, the CPU seconds of the three process trees (the worker's:
    ``run`` and all below it) and the worker's ``/metrics``."""

    def __init__(self, run_pid: int, broker_pid: int | None, postgres_pid: int | None, metrics_url: str):
        super().__init__(daemon=True)
        self.run_pid, self.broker_pid, self.postgres_pid = run_pid, broker_pid, postgres_pid
        self.metrics_url = metrics_url
        self.sampled = Sampled()
        self.done = threading.Event()
        # the broker and PostgreSQL ran before the run; ``run`` has only just started
        self.sampled.cpu_start = {name: cpu_seconds(pid) for name, pid in self._roots().items()}
        self.sampled.cpu_start["worker"] = 0.0

    def _roots(self) -> dict[str, int]:
        roots = {"worker": self.run_pid, "broker": self.broker_pid, "postgres": self.postgres_pid}
        return {name: pid for name, pid in roots.items() if pid}

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        s = self.sampled
        for pid in _children(self.run_pid):
            s.worker_peak_kb = max(s.worker_peak_kb, _status(pid).get("VmHWM", 0))
        if self.broker_pid:
            s.broker_peak_kb = max(s.broker_peak_kb, _status(self.broker_pid).get("VmHWM", 0))
        if self.postgres_pid:
            pids = [self.postgres_pid, *_children(self.postgres_pid)]
            s.postgres_peak_kb = max(s.postgres_peak_kb, sum(map(_pss_kb, pids)))
        for name, pid in self._roots().items():
            if Path(f"/proc/{pid}").exists():  # else keep the last sample of a tree that ended
                s.cpu_last[name] = max(s.cpu_last.get(name, 0.0), cpu_seconds(pid))
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                s.metrics = response.read().decode()
        except OSError:
            pass  # not up yet, or gone: keep the last scrape


def run_pipeline(settings: Settings, days: int, speed: str, log: Path) -> tuple[float, float, Sampled]:
    """``hospital-stream run --days days --speed speed``; its start (Unix time), wall seconds
    and what was sampled meanwhile. Its output goes to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
    env.update(settings.to_env())
    status = stack.status(settings)
    argv = [str(BIN / "hospital-stream"), "run", "--days", str(days), "--speed", speed]
    with log.open("ab") as out:
        started, t0 = time.time(), time.perf_counter()
        child = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        sampler = Sampler(
            child.pid, status["broker"].pid, status["postgres"].pid, f"{settings.web_url}metrics"
        )
        sampler.start()
        code = child.wait()
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"hospital-stream run exited with {code}:\n" + "\n".join(tail))
    return started, seconds, sampler.sampled


def latency_run(settings: Settings) -> Settings:
    """Settings of a run of its own (database, topics, consumer group) on the same stack, for
    the latency run when the long run used up the whole schedule."""
    url = urllib.parse.urlsplit(settings.database_url)
    return settings.replace(
        database_url=urllib.parse.urlunsplit(url._replace(path="/hospital_latency")),
        topic_prefix=f"{settings.topic_prefix}-latency",
        app_id=f"{settings.app_id}-latency",
    )


# --- reading the metrics ------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text as sample name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def labelled(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, label: str
) -> dict[str, float]:
    """One metric's values by one label's value."""
    return {labels[label]: value for labels, value in metrics.get(name, []) if label in labels}


def histogram(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str
) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets ``(upper bound, count)``, the ``+Inf`` one last."""
    buckets = [
        (float(labels["le"]), value)
        for labels, value in metrics.get(f"{name}_bucket", [])
        if all(labels.get(k) == v for k, v in match.items())
    ]
    return sorted(buckets)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket that holds the q-th
    observation; the highest finite bound when it falls in ``+Inf``; NaN with no observations."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return lower


# --- the stored rows and their bare COPY --------------------------------------------------------


#: what the stored rows are copied into: the same schema, the heap floor, the schema at --schema-at
SAME_SCHEMA, HEAP_FLOOR = "same schema", "heap floor"
COPY_DATABASE = "bench_copy"
HEAP_SCHEMA = "heap_floor"


@dataclasses.dataclass
class Phase:
    """Day 0 or days 1..N: rows stored, their COPY text, the pipeline's time and the bare COPY's
    into each target (SAME_SCHEMA, HEAP_FLOOR, ...), in all and per table."""

    name: str
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes: int = 0
    pipeline_seconds: float = math.nan
    #: target -> BEGIN..COMMIT seconds of the phase's COPYs into it
    copy_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: target -> table -> seconds of its COPY (the national id index built after day 0's
    #: patients counts as theirs)
    table_seconds: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def seconds(self, target: str) -> float:
        return self.copy_seconds.get(target, math.nan)


def _day_filters(conn: psycopg.Connection[Any]) -> dict[str, tuple[sql.Composable, sql.Composable]]:
    """Per data table, what selects its day-0 rows and its later rows (reference tables have no
    sim_day: all of them are day 0's)."""
    return {
        t: (sql.SQL("sim_day = 0"), sql.SQL("sim_day > 0"))
        if schema.STORED_TABLES[t].has_sim_day
        else (sql.SQL("true"), sql.SQL("false"))
        for t in schema.DATA_TABLES
    }


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def migrations_up_to(version: int, folder: Path) -> Path:
    """``folder`` holding the packaged migrations up to ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    for migration in db.migrations():
        if migration.version <= version:
            (folder / migration.path.name).write_text(migration.path.read_text())
    return folder


@dataclasses.dataclass
class Target:
    """Fresh tables the stored rows are copied into: their database and schema."""

    label: str
    url: str
    namespace: str = "public"


def fresh_targets(admin_url: str, work: Path, schema_at: int | None) -> list[Target]:
    """A fresh database migrated like the run's, holding the same schema's tables and, in schema
    HEAP_SCHEMA, tables of the same columns only (no key, constraint, default or index); with
    ``schema_at`` a second one migrated up to that migration."""
    wanted = [(COPY_DATABASE, None)]
    if schema_at is not None:
        wanted.append((f"{COPY_DATABASE}_{schema_at:04d}", migrations_up_to(schema_at, work / "sql")))
    targets = []
    with db.connect(admin_url, autocommit=True) as conn:
        for name, folder in wanted:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            url = with_database(admin_url, name)
            if folder is None:
                db.migrate(url)
                targets += [Target(SAME_SCHEMA, url), Target(HEAP_FLOOR, url, HEAP_SCHEMA)]
            else:
                db.migrate(url, folder)
                targets.append(Target(f"schema at {schema_at:04d}", url))
    with db.connect(targets[0].url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HEAP_SCHEMA)))
        for table in schema.DATA_TABLES:
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} AS TABLE public.{} WITH NO DATA").format(
                    sql.Identifier(HEAP_SCHEMA), sql.Identifier(table), sql.Identifier(table)
                )
            )
    # heap floor first: it reads the spool from disk, the others from the page cache
    return sorted(targets, key=lambda t: t.label != HEAP_FLOOR)


def drop_targets(admin_url: str, targets: Iterable[Target]) -> None:
    with db.connect(admin_url, autocommit=True) as conn:
        for name in {urllib.parse.urlsplit(t.url).path.lstrip("/") for t in targets}:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_phase(conn: psycopg.Connection[Any], target: Target, phase: Phase, files: dict[str, Path]) -> None:
    """One transaction of the phase's COPYs into ``target``, each table timed; after day 0's
    patients, the national id index the sink builds then (where the schema has that step)."""
    deferred = target.namespace == "public" and phase.name == "day 0" and _has_index_step(conn)
    seconds = phase.table_seconds.setdefault(target.label, {})
    started = time.perf_counter()
    with conn.transaction():
        for table, path in files.items():
            if not phase.rows[table]:
                continue
            t0 = time.perf_counter()
            query = sql.SQL("COPY {}.{} FROM STDIN").format(
                sql.Identifier(target.namespace), sql.Identifier(table)
            )
            with path.open("rb") as source, conn.cursor() as cur, cur.copy(query) as copy:
                while block := source.read(COPY_BLOCK):
                    copy.write(block)
            if deferred and table == "patients":
                conn.execute(db.INDEX_NATIONAL_IDS)
            seconds[table] = time.perf_counter() - t0
    phase.copy_seconds[target.label] = time.perf_counter() - started


def _has_index_step(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regprocedure('index_patients_national_id()') IS NOT NULL").fetchone()
    return bool(row and row[0])


def bare_copy(
    conn: psycopg.Connection[Any],
    admin_url: str,
    phases: Sequence[Phase],
    work: Path,
    schema_at: int | None = None,
) -> None:
    """Export each phase's stored rows (untimed), then COPY them into each fresh target: one
    transaction per phase and target, BEGIN..COMMIT and each table timed."""
    filters = _day_filters(conn)
    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    targets = fresh_targets(admin_url, work, schema_at)
    try:
        for index, phase in enumerate(phases):
            files = {}
            for table in schema.DATA_TABLES:
                path = spool / f"{table}.copy"
                query = sql.SQL("COPY (SELECT * FROM public.{} WHERE {}) TO STDOUT").format(
                    sql.Identifier(table), filters[table][index]
                )
                rows = 0
                with path.open("wb") as out, conn.cursor() as cur, cur.copy(query) as copy:
                    for block in copy:
                        out.write(block)
                        rows += bytes(block).count(b"\n")  # one a row: COPY text escapes newlines
                phase.rows[table] = rows
                phase.bytes += path.stat().st_size
                files[table] = path
            for target in targets:
                with db.connect(target.url, autocommit=True) as target_conn:
                    copy_phase(target_conn, target, phase, files)
            for path in files.values():
                path.unlink()
    finally:
        drop_targets(admin_url, targets)


def completed_at(conn: psycopg.Connection[Any], day: int) -> float:
    row = conn.execute(
        "SELECT extract(epoch FROM completed_at) FROM sim_days WHERE sim_day = %s", (day,)
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"day {day} is not complete")
    return float(row[0])


# --- the report -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    """Everything one benchmark measured."""

    seed: int
    beds: int
    population: int
    days: int
    run_seconds: float = 0.0
    phases: list[Phase] = dataclasses.field(default_factory=list)
    stages: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)  # seconds, messages
    generated_rows: float = 0.0
    produced_bytes: float = 0.0
    sampled: Sampled = dataclasses.field(default_factory=Sampled)
    latency_days: int = 0
    latency_speed: float = 0.0
    latency: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    schema_at: int | None = None
    cpus: int = 0
    load_start: str = ""
    load_end: str = ""
    postgres_version: str = ""


def _combined(phases: Iterable[Phase]) -> Phase:
    phases = list(phases)
    out = Phase(" + ".join(p.name for p in phases))
    for p in phases:
        for table, rows in p.rows.items():
            out.rows[table] = out.rows.get(table, 0) + rows
        out.bytes += p.bytes
    out.pipeline_seconds = sum(p.pipeline_seconds for p in phases)
    for target in phases[0].copy_seconds:
        out.copy_seconds[target] = sum(p.seconds(target) for p in phases)
        out.table_seconds[target] = {
            table: sum(p.table_seconds.get(target, {}).get(table, 0.0) for p in phases)
            for table in out.rows
            if any(table in p.table_seconds.get(target, {}) for p in phases)
        }
    return out


def phases_and_total(report: Report) -> list[Phase]:
    """Each phase, then both together when there are two."""
    return [*report.phases, _combined(report.phases)] if len(report.phases) > 1 else list(report.phases)


def ratio(phase: Phase, target: str) -> float:
    """The pipeline's rows/s over the bare COPY's into ``target``."""
    return rate(phase.total_rows, phase.pipeline_seconds) / rate(phase.total_rows, phase.seconds(target))


def comparisons(report: Report) -> list[tuple[Phase, float, float]]:
    """Per phase and both together: the phase, and the pipeline's rows/s over the bare COPY's
    into the same schema and into the heap floor."""
    return [(p, ratio(p, SAME_SCHEMA), ratio(p, HEAP_FLOOR)) for p in phases_and_total(report)]


def latency_figures(metrics: str) -> dict[str, dict[str, float]]:
    """p50, p99 and counts of the latency and schedule-lag histograms of a scrape."""
    parsed = parse_metrics(metrics)
    series = {
        "send -> PostgreSQL": ("hospital_streamed_latency_seconds", {"where": "database"}),
        "send -> occupancy table": ("hospital_streamed_latency_seconds", {"where": "table"}),
        "stream slot lateness": ("hospital_schedule_lag_seconds", {"kind": "slot"}),
        "day batch lateness": ("hospital_schedule_lag_seconds", {"kind": "batch"}),
    }
    out = {}
    for label, (name, match) in series.items():
        buckets = histogram(parsed, name, **match)
        out[label] = {
            "count": buckets[-1][1] if buckets else 0.0,
            "p50": quantile(0.5, buckets),
            "p99": quantile(0.99, buckets),
        }
    return out


def summary(report: Report) -> dict[str, Any]:
    """The report as JSON-ready figures."""
    return {
        "hospital": {"seed": report.seed, "beds": report.beds, "population": report.population},
        "days_after_day_0": report.days,
        "machine": {
            "cpus": report.cpus,
            "loadavg_start": report.load_start,
            "loadavg_end": report.load_end,
            "postgres_version": report.postgres_version,
        },
        "run_seconds": report.run_seconds,
        "phases": [
            {
                "name": p.name,
                "rows": p.total_rows,
                "bytes": p.bytes,
                "rows_by_table": p.rows,
                "end_to_end": {
                    "seconds": p.pipeline_seconds,
                    "rows_per_second": rate(p.total_rows, p.pipeline_seconds),
                    "mb_per_second": rate(p.bytes / MB, p.pipeline_seconds),
                },
                "bare_copy": {
                    target: {
                        "seconds": seconds,
                        "rows_per_second": rate(p.total_rows, seconds),
                        "mb_per_second": rate(p.bytes / MB, seconds),
                        "seconds_by_table": p.table_seconds.get(target, {}),
                    }
                    for target, seconds in p.copy_seconds.items()
                },
                "ratio_end_to_end_over_copy": same,
                "ratio_end_to_end_over_heap_floor": floor,
            }
            for p, same, floor in comparisons(report)
        ],
        "cpu_seconds": {"wall": report.run_seconds, **report.sampled.cpu_seconds},
        "stages": {name: {"seconds": s, "messages": m} for name, (s, m) in report.stages.items()},
        "generated_rows": report.generated_rows,
        "produced_batch_bytes": report.produced_bytes,
        "peak_memory_bytes": {
            "worker_rss": report.sampled.worker_peak_kb * 1024,
            "broker_rss": report.sampled.broker_peak_kb * 1024,
            "postgres_pss": report.sampled.postgres_peak_kb * 1024,
        },
        "latency_run": {"days": report.latency_days, "speed": report.latency_speed, **report.latency},
    }


def format_report(report: Report) -> str:
    """The figures as plain text."""
    lines = [
        f"bench-e2e: seed {report.seed}, {report.beds:,} beds, population {report.population:,}, "
        f"day 0 and {report.days} days at speed max; MB = 10^6 bytes of COPY text",
        f"machine: {report.cpus} CPUs, load average {report.load_start} at start, {report.load_end} "
        f"at end; PostgreSQL {report.postgres_version or '?'}",
        f"hospital-stream run: {report.run_seconds:.1f} s wall (worker start and stop included)",
        "",
        "end to end (start of `run` -> day 0 complete; day 0 complete -> last day complete) against a "
        "bare COPY of the same rows into a fresh database of the same PostgreSQL: into the same schema "
        "and into plain heap tables (the heap floor: no key, constraint or index)",
        f"{'phase':<22}{'rows':>12}{'MB':>9}{'e2e s':>9}{'e2e rows/s':>12}"
        f"{'COPY s':>9}{'COPY rows/s':>13}{'heap s':>9}{'heap rows/s':>13}{'ratio':>7}{'/heap':>7}",
    ]
    for p, same, floor in comparisons(report):
        copy, heap = p.seconds(SAME_SCHEMA), p.seconds(HEAP_FLOOR)
        lines.append(
            f"{p.name:<22}{p.total_rows:>12,}{p.bytes / MB:>9.1f}{p.pipeline_seconds:>9.1f}"
            f"{num(rate(p.total_rows, p.pipeline_seconds)):>12}"
            f"{copy:>9.2f}{num(rate(p.total_rows, copy)):>13}{heap:>9.2f}{num(rate(p.total_rows, heap)):>13}"
            f"{num(same, 2):>7}{num(floor, 2):>7}"
        )
    lines += [
        "(ratio: e2e rows/s over same-schema COPY rows/s, the goal 0.5 or more; /heap: over the heap "
        "floor's; day 0 is the catchment, loaded once per run)",
        "",
        *table_lines(phases_and_total(report)[-1]),
        "",
        "where the worker's time went (seconds of wall time per stage; the stages overlap)",
        f"{'stage':<13}{'seconds':>9}{'messages':>10}  what",
    ]
    for name, (seconds, messages) in report.stages.items():
        lines.append(f"{name:<13}{seconds:>9.1f}{messages:>10,.0f}  {STAGES.get(name, '')}")
    lines += [
        f"generated {report.generated_rows:,.0f} rows, "
        f"{report.produced_bytes / MB:,.1f} MB of batch messages",
        "",
        f"peak memory: worker {report.sampled.worker_peak_kb / 1024:,.0f} MB RSS, broker "
        f"{report.sampled.broker_peak_kb / 1024:,.0f} MB RSS, PostgreSQL "
        f"{report.sampled.postgres_peak_kb / 1024:,.0f} MB PSS (all its processes)",
        "CPU seconds during the run ({:.1f} s wall): worker {}, broker {}, PostgreSQL {} "
        "(user + system of each process tree)".format(
            report.run_seconds, *(num(report.sampled.cpu_seconds[name], 1) for name in PROCESSES)
        ),
        "",
        f"latency: {report.latency_days} more days at speed {report.latency_speed:g} "
        "(from the histograms' buckets, interpolated)",
        f"{'':<26}{'count':>7}{'p50 s':>9}{'p99 s':>9}",
    ]
    for label, figures in report.latency.items():
        lines.append(
            f"{label:<26}{figures['count']:>7.0f}{num(figures['p50'], 3):>9}{num(figures['p99'], 3):>9}"
        )
    lines.append("(targets at speed 1: 2 s p99 to PostgreSQL, 0.1 s p99 to the table, slots within 1 s)")
    return "\n".join(lines)


def table_lines(phase: Phase) -> list[str]:
    """Each table's rows and COPY seconds into every target, of ``phase``."""
    targets = list(phase.table_seconds)
    lines = [
        f"COPY seconds per table ({phase.name}; the national id index built after day 0 counts as "
        "the patients')",
        f"{'table':<20}{'rows':>12}" + "".join(f"{t:>17}" for t in targets),
    ]
    for table, rows in phase.rows.items():
        if rows:
            lines.append(
                f"{table:<20}{rows:>12,}"
                + "".join(f"{num(phase.table_seconds[t].get(table, math.nan), 2):>17}" for t in targets)
            )
    return lines


# --- the command ----------------------------------------------------------------------------------


def _speed(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text} is not a speed above 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_e2e",
        description="Run the pipeline at max speed on an embedded stack of its own, COPY the rows it "
        "stored into fresh tables of the same schema and into plain heap tables of the same PostgreSQL, "
        "and print the rates, both ratios, COPY seconds per table, per-stage times, peak memory, CPU "
        "seconds per process and real-speed latencies.",
    )
    days = parser.add_mutually_exclusive_group()
    days.add_argument(
        "--days", type=positive_int, default=DEFAULT_DAYS, help=f"days after day 0 (default {DEFAULT_DAYS})"
    )
    days.add_argument("--full", action="store_true", help="the whole schedule (HOSPITAL_SCHEDULE_DAYS)")
    add_hospital_arguments(parser)
    parser.add_argument(
        "--latency-days", type=positive_int, default=3, help="days of the fast-clock latency run (default 3)"
    )
    parser.add_argument(
        "--latency-speed", type=_speed, default=60.0, help="its speed factor (default 60: a day per 15 s)"
    )
    parser.add_argument(
        "--schema-at",
        type=positive_int,
        metavar="V",
        help="also COPY the rows into the schema as of migration V (the figures before a schema change)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="leave the stack running and its home in place")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    hospital = hospital_settings(args)
    days = hospital.schedule_days - 1 if args.full else min(args.days, hospital.schedule_days - 1)
    report = Report(
        seed=hospital.seed,
        beds=hospital.beds,
        population=hospital.population,
        days=days,
        latency_days=args.latency_days,
        latency_speed=args.latency_speed,
        schema_at=args.schema_at,
        cpus=os.cpu_count() or 0,
        load_start=loadavg(),
    )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    base = traversable_tempdir("hospital-stream-bench-e2e-")
    own = stack_settings(base / "home")
    settings = hospital.replace(
        home=own.home,
        kafka_url=own.kafka_url,
        database_url=own.database_url,
        web_port=own.web_port,
        admin_database_url=None,
        reader_database_url=None,
        run_until_day=None,
    )
    log = base / "run.log"
    try:
        progress(f"starting the embedded stack in {settings.home}")
        stack.up(settings)
        progress(f"hospital-stream run --days {days + 1} --speed max (log: {log})")
        started, report.run_seconds, sampled = run_pipeline(settings, days + 1, "max", log)
        report.sampled = sampled
        metrics = parse_metrics(sampled.metrics)
        seconds = labelled(metrics, "hospital_stage_seconds_total", "stage")
        messages = labelled(metrics, "hospital_stage_messages_total", "stage")
        report.stages = {name: (seconds.get(name, math.nan), messages.get(name, math.nan)) for name in STAGES}
        report.generated_rows = sum(v for _, v in metrics.get("hospital_generated_rows_total", []))
        report.produced_bytes = sum(v for _, v in metrics.get("hospital_produced_bytes_total", []))
        with db.connect(settings.admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            report.postgres_version = str(row[0]) if row else ""
            day0, last = completed_at(conn, 0), completed_at(conn, days)
            report.phases = [Phase("day 0", pipeline_seconds=day0 - started)]
            if days:
                report.phases.append(Phase(f"days 1..{days}", pipeline_seconds=last - day0))
            progress("bare COPY of the stored rows into fresh tables")
            bare_copy(conn, settings.admin_url, report.phases, base / "copy", args.schema_at)
        progress(f"hospital-stream run --days {args.latency_days} --speed {args.latency_speed:g}")
        fast = settings
        if days + 1 + args.latency_days > settings.schedule_days:  # the long run used up the schedule
            fast = latency_run(settings)
            run_pipeline(fast, 1, "max", log)  # its day 0 (the catchment) first, out of the figures
        _, _, latency = run_pipeline(fast, args.latency_days, f"{args.latency_speed:g}", log)
        report.latency = latency_figures(latency.metrics)
        report.load_end = loadavg()
        print(format_report(report), flush=True)
        if args.json:
            args.json.write_text(to_json(summary(report)))
            progress(f"wrote {args.json}")
    finally:
        if args.keep:
            progress(
                f"kept the stack (home {settings.home}); stop it with HOSPITAL_HOME={settings.home} "
                f"hospital-stream stack down, then rm -r {base}"
            )
        else:
            stack.down(settings)
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
