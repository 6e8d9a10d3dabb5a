"""Admin commands: ``hospital-stream stack|run|db|status|validate|export``.

Errors meant for people (:class:`HospitalStreamError`) print as one line and exit 1; click's
own usage errors exit 2. Nothing here imports the Faust app until ``run`` needs it, so the
other commands start fast and never touch Kafka unless they must.

Each command connects with the least it needs: migrations and ``run --reset`` as the database
owner (``Settings.admin_url``), the worker and ``dlq replay`` as the writer login
(``database_url``), and ``status``, ``validate``, ``export`` and ``dlq list`` as the read-only
login (``reader_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import functools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from hospital_stream import db
from hospital_stream.devstack import stack
from hospital_stream.errors import BrokerLost, ConfigError, DatabaseError, HospitalStreamError
from hospital_stream.settings import Settings, documented_settings, parse_speed

F = TypeVar("F", bound=Callable[..., Any])


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env().replace(**{k: v for k, v in overrides.items() if v is not None})


def friendly_errors(fun: F) -> F:
    """Turn the project's errors into one line on stderr and exit status 1."""

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fun(*args, **kwargs)
        except HospitalStreamError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hospital-stream")
def main() -> None:
    """A simulated state hospital streamed through Kafka and Faust into PostgreSQL.

    Every setting comes from HOSPITAL_* environment variables (see `hospital-stream settings`);
    with none set, everything runs on the embedded local stack.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# --- the embedded stack ---------------------------------------------------------------------


@main.group("stack")
def stack_group() -> None:
    """Start, stop and inspect the embedded broker and PostgreSQL (127.0.0.1 only)."""


@stack_group.command("up")
@friendly_errors
def stack_up() -> None:
    """Start the embedded broker and PostgreSQL if they are not running."""
    settings = _settings()
    _require_embedded(settings)
    started = stack.up(settings)
    _migrate(settings)
    click.echo(f"started: {', '.join(started)}" if started else "already running")
    _print_stack(settings)


@stack_group.command("down")
@friendly_errors
def stack_down() -> None:
    """Stop the embedded broker and PostgreSQL (the data stays under HOSPITAL_HOME)."""
    stopped = stack.down(_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_group.command("status")
@friendly_errors
def stack_status() -> None:
    """Show whether the embedded services run, where, and their logs."""
    _print_stack(_settings())


@stack_group.command("env")
@friendly_errors
def stack_env() -> None:
    """Print `export HOSPITAL_...` lines: eval "$(hospital-stream stack env)"."""
    for line in stack.env_lines(_settings()):
        click.echo(line)


def _print_stack(settings: Settings) -> None:
    for name, service in stack.status(settings).items():
        state = f"running (pid {service.pid})" if service.running else "stopped"
        click.echo(f"{name:9} {state:22} {service.address:24} log: {service.log_file}")


def _require_embedded(settings: Settings) -> None:
    if not settings.embedded:
        raise ConfigError("HOSPITAL_EMBEDDED=false: the broker and PostgreSQL are not ours to start")


@contextlib.contextmanager
def _embedded_postgres(settings: Settings) -> Iterator[None]:
    """On the embedded stack, PostgreSQL runs for the command if it is not running already
    (and stops again afterwards)."""
    started = stack.up(settings, only=["postgres"]) if settings.embedded else []
    try:
        yield
    finally:
        if started:
            stack.down(settings, only=started)


@contextlib.contextmanager
def _database(settings: Settings, *, write: bool = False) -> Iterator[Any]:
    """A connection to the run's migrated database: as the read-only login, or as the worker's
    login when the command must ``write`` rows."""
    url = settings.database_url if write else settings.reader_url
    with _embedded_postgres(settings), db.connect(url) as conn:
        db.require_schema(conn)
        yield conn


def _migrate(settings: Settings) -> list[str]:
    """Apply pending migrations as the owner, then make sure the worker's and the reader's
    logins exist in their group roles; return the migrations applied."""
    applied = db.migrate(settings.admin_url)
    with db.connect(settings.admin_url, autocommit=True) as conn:
        for line in db.ensure_logins(conn, settings.database_url, settings.reader_url):
            click.echo(line)
    return applied


# --- database -------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Schema migrations."""


@db_group.command("migrate")
@friendly_errors
def db_migrate() -> None:
    """Apply pending sql/NNNN_*.sql migrations in order."""
    settings = _settings()
    with _embedded_postgres(settings):
        applied = _migrate(settings)
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@main.command("settings")
def show_settings() -> None:
    """List every HOSPITAL_* setting with its default and current value."""
    settings = Settings.from_env()
    current = settings.to_env()
    derived = {
        "HOSPITAL_ADMIN_DATABASE_URL": settings.admin_url,
        "HOSPITAL_READER_DATABASE_URL": settings.reader_url,
    }
    for name, default, doc in documented_settings():
        value = _hide_password(current[name])
        if not value and name in derived:
            value = f"  # empty, so {_hide_password(derived[name])}"
        click.echo(f"{name}={value}\n    default {default!r}: {doc}")


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# --- run ------------------------------------------------------------------------------------


class _Speed(click.ParamType):
    """A speed factor: a number above 0, or 'max' (kept as the string, since None means unset)."""

    name = "speed"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        try:
            speed = parse_speed(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return "max" if speed is None else speed


@main.command("run")
@click.option("--days", type=click.IntRange(min=1), help="Simulated days to add, then exit 0.")
@click.option(
    "--speed",
    type=_Speed(),
    help="Speed factor (1 = the real 9-day schedule) or 'max'. Default: HOSPITAL_SPEED (1).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Simulation seed (a new run needs --reset).")
@click.option("--reset", is_flag=True, help="Delete everything stored and start again at day 0.")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="The worker's log level.",
)
@friendly_errors
def run(days: int | None, speed: float | str | None, seed: int | None, reset: bool, loglevel: str) -> None:
    """Run the worker in this process: simulate, stream and store until --days are stored.

    Starts the embedded broker and PostgreSQL when they are not running, and stops what it
    started when it ends (Ctrl-C stops it cleanly). Running again resumes where it stopped.
    """
    settings = _settings(seed=seed)
    if speed is not None:
        settings = settings.replace(speed=None if speed == "max" else speed)
    started: list[str] = []
    try:
        if settings.embedded:
            started = stack.up(settings)
            if reset and "broker" not in started:
                stack.down(settings, only=["broker"])  # forget the old run's messages
                stack.up(settings)
        elif reset:
            _delete_topics(settings)
        _migrate(settings)
        with db.connect(settings.admin_url, autocommit=True) as conn:  # the owner may reset
            if reset:
                db.reset(conn)
            db.check_run_config(conn, _hospital_config(settings))
            first_day = db.last_complete_day(conn) + 1
        end_day = settings.schedule_days if days is None else min(settings.schedule_days, first_day + days)
        if first_day >= end_day:
            click.echo(f"the schedule ends at day {settings.schedule_days}: nothing left to run")
            return
        settings = settings.replace(run_until_day=end_day)
        reached = _run_worker(settings, first_day, end_day, loglevel)
    finally:
        if started:
            stack.down(settings, only=list(reversed(started)))
    if days is not None and not reached:
        raise click.exceptions.Exit(1)


def _delete_topics(settings: Settings) -> None:
    """Delete the run's topics and the app's changelogs, so a reset run starts from nothing."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    async def delete() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers="{}:{}".format(*settings.kafka_address))
        await admin.start()
        try:
            ours = [
                t
                for t in await admin.list_topics()
                if t.startswith(settings.topic_prefix + ".") or t.startswith(settings.app_id + "-")
            ]
            if ours:
                await admin.delete_topics(ours)
            return ours
        finally:
            await admin.close()

    try:
        deleted = asyncio.run(asyncio.wait_for(delete(), 30))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise HospitalStreamError(
            f"cannot delete the old run's topics at {settings.kafka_url}: {exc!r}"
        ) from exc
    click.echo(f"deleted topics: {', '.join(deleted) or 'none'}")


def _hospital_config(settings: Settings) -> dict[str, Any]:
    from hospital_stream.model import HospitalConfig  # imported here: it loads NumPy

    return HospitalConfig.from_settings(settings).to_json()


#: a worker that outlives its stop request this long is killed (see the embedded broker's defects)
WORKER_STOP_SECONDS = 60.0
#: restarts in one run: a worker that keeps failing is not worth restarting for ever
MAX_RESTARTS = 5
STALLED = -1  # _supervise's code for a worker it killed because it stalled
RESTART_REASONS = {
    BrokerLost.exit_code: "the broker lost its messages",
    STALLED: "the worker stored nothing for too long",
}


def _run_worker(settings: Settings, first_day: int, end_day: int, loglevel: str) -> bool:
    """Supervise the worker (``hospital-stream worker``, a child process) until ``end_day`` is
    stored or we are stopped; start it again when it exits because the broker lost its messages."""
    if first_day == 0:
        click.echo(f"day 0 loads the catchment population ({settings.population:,} people) first")
    click.echo(
        f"simulating days {first_day}..{end_day - 1} at speed {settings.speed or 'max'}; "
        f"dashboard {settings.web_url}dashboard/ (JSON: /occupancy/, /staff/, /metrics); Ctrl-C stops"
    )
    progress = _Progress(settings, first_day, end_day)
    argv = [sys.executable, "-m", "hospital_stream.cli", "worker", "--loglevel", loglevel]
    env = {**os.environ, **settings.to_env()}
    del env["HOSPITAL_ADMIN_DATABASE_URL"]  # the worker gets no owner credentials
    restarts = 0
    with _termination_requests() as stop_requested:
        while True:
            child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
            code = _supervise(child, progress, stop_requested)
            if code not in RESTART_REASONS or stop_requested() or restarts >= MAX_RESTARTS:
                break
            restarts += 1
            click.echo(
                f"{RESTART_REASONS[code]}: starting the worker again from PostgreSQL's last complete day"
            )
    reached = progress.summary()
    if code != 0 and not reached and not stop_requested():
        raise HospitalStreamError(f"the worker stopped after an error (exit status {code}; its log is above)")
    return reached


def _supervise(
    child: subprocess.Popen[bytes], progress: _Progress, stop_requested: Callable[[], bool]
) -> int:
    """Report progress until the child exits; ask it to stop when the last day is stored or
    when we are asked to stop, and kill it if it does not within WORKER_STOP_SECONDS. A worker
    that stores nothing for its stall limit is killed (SIGKILL loses nothing: what it had not
    acknowledged is read again) and STALLED returned, so that it starts again."""
    speed, stall_seconds = progress.settings.speed, progress.settings.stall_seconds
    stall_limit = max(stall_seconds, 3 * 180 / speed) if speed else stall_seconds
    progress.last_change = time.monotonic()  # a new worker's stall is counted from its start
    stop_sent_at: float | None = None
    while True:
        try:
            return child.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        if stop_sent_at is None:
            progress.report()
            if progress.reached or stop_requested():
                child.send_signal(signal.SIGTERM)  # the worker's own clean shutdown
                stop_sent_at = time.monotonic()
            elif time.monotonic() - progress.last_change > stall_limit:
                child.kill()
                child.wait()
                return STALLED
        elif time.monotonic() - stop_sent_at > WORKER_STOP_SECONDS:
            click.echo(f"the worker did not stop within {WORKER_STOP_SECONDS:.0f} s: killing it", err=True)
            child.kill()


@contextlib.contextmanager
def _termination_requests() -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C and SIGTERM into a flag the supervisor polls (the worker gets a SIGTERM)."""
    requested: list[int] = []

    def note(signum: int, frame: Any) -> None:
        requested.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _die_with_parent() -> None:
    """In the worker, before it starts: be killed when ``run`` dies, however it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


@main.command("worker")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@friendly_errors
def worker(loglevel: str) -> None:
    """Run the Faust worker in the foreground, like ``faust -A hospital_stream.app worker``
    but with quieter logs (``run`` starts it this way). Settings come from HOSPITAL_*."""
    from faust.worker import Worker

    from hospital_stream.app import app

    faust_worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    faust_worker.spinner = None
    # Normal at high speed, so kept out of the logs: Faust warns whenever its producer buffer
    # holds over 100 messages (backpressure), and mode whenever a timer's catch-up work
    # outlasts its interval (the next tick simply continues).
    for name in ("faust.transport.producer", "mode.timers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            reason = faust_worker.crash_reason or f"exit status {exc.code}"
            raise HospitalStreamError(f"the worker stopped after an error: {reason}") from None


class _Progress:
    """Progress from PostgreSQL: complete days, rows/s, bytes against the plan, ETA. On a
    terminal one line updated in place every 2 s; otherwise a plain line every 10 s."""

    LOG_EVERY_SECONDS = 10.0

    def __init__(self, settings: Settings, first_day: int, end_day: int) -> None:
        self.settings, self.first_day, self.end_day = settings, first_day, end_day
        self.started = time.monotonic()
        self.last_day = first_day - 1
        self.first_rows: tuple[int, float] | None = None  # rows inserted, when first seen
        self.last_logged = -math.inf
        self.tty = sys.stdout.isatty()
        self.planned_bytes: float | None = None
        #: when the stored days or rows last changed (or PostgreSQL could not be asked)
        self.last_change = self.started
        self._seen: tuple[int, int] | None = None
        # the plan takes seconds (the catchment is built first): worked out beside the run
        threading.Thread(target=self._plan, daemon=True).start()

    def _plan(self) -> None:
        with contextlib.suppress(Exception):  # a progress figure, never worth failing a run for
            self.planned_bytes = float(_plan(self.settings, self.settings.schedule_days)["bytes"])

    @property
    def reached(self) -> bool:
        return self.last_day >= self.end_day - 1

    def report(self, final: bool = False) -> None:
        try:
            with db.connect(self.settings.database_url) as conn:
                self.last_day = db.last_complete_day(conn)
                row = conn.execute(
                    "SELECT coalesce(sum(n_tup_ins), 0), pg_database_size(current_database())"
                    " FROM pg_stat_user_tables"
                ).fetchone()
        except HospitalStreamError as exc:
            click.echo(f"progress unavailable: {exc}", err=True)
            self.last_change = time.monotonic()  # an outage is the sink's to judge, not a stall
            return
        rows, size = (int(row[0]), int(row[1])) if row else (0, 0)
        now = time.monotonic()
        if (self.last_day, rows) != self._seen:
            self._seen, self.last_change = (self.last_day, rows), now
        if not (self.tty or final or now - self.last_logged >= self.LOG_EVERY_SECONDS):
            return
        self.last_logged = now
        if self.first_rows is None:
            self.first_rows = (rows, now)
        elapsed = max(now - self.started, 1e-9)
        rows_per_second = (rows - self.first_rows[0]) / max(now - self.first_rows[1], 1e-9)
        done, total = self.last_day - self.first_day + 1, self.end_day - self.first_day
        rate = done / elapsed
        date = self.settings.start_date + dt.timedelta(days=self.last_day)
        parts = [
            f"{done}/{total} days stored" + (f", through day {self.last_day} ({date})" if done > 0 else "")
        ]
        parts.append(f"{rate:.2f} days/s, {rows_per_second:,.0f} rows/s")
        planned = f" of {self.planned_bytes / 1e6:,.0f} MB planned" if self.planned_bytes else ""
        parts.append(f"{size / 1e6:,.0f} MB{planned}")
        if 0 < done < total:
            parts.append(f"ETA {dt.timedelta(seconds=round((total - done) / rate))}")
        line = " | ".join(parts)
        if self.tty and not final:
            click.echo(f"\r\033[K{line}", nl=False)
        else:
            click.echo(("\n" if self.tty else "") + line)

    def summary(self) -> bool:
        """Print what is stored now; True when the last day is."""
        self.report(final=True)
        elapsed = time.monotonic() - self.started
        verb = "stored" if self.reached else "stopped after"
        try:
            with db.connect(self.settings.database_url) as conn:
                counts = db.table_row_counts(conn)
        except HospitalStreamError as exc:
            click.echo(f"{verb} day {self.last_day} in {elapsed:.1f} s; rows unavailable: {exc}")
            return self.reached
        click.echo(
            f"{verb} day {self.last_day} in {elapsed:.1f} s; rows: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
        return self.reached


# --- inspection -----------------------------------------------------------------------------


@main.command("status")
@friendly_errors
def status() -> None:
    """Simulated date, days stored, rows per table, stream/batch counts, lag, dead letters."""
    settings = _settings()
    with _database(settings) as conn:
        last_day = db.last_complete_day(conn)
        run = conn.execute("SELECT run_id, config FROM simulation").fetchone()
        date = conn.execute("SELECT sim_date FROM sim_days WHERE sim_day = %s", (last_day,)).fetchone()
        counts = db.table_row_counts(conn)
        stream = conn.execute(
            "SELECT count(*) FILTER (WHERE seen_in_stream), count(*) FILTER (WHERE seen_in_batch),"
            " count(*) FILTER (WHERE seen_in_stream AND seen_in_batch) FROM transfers"
        ).fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    if run is None:
        click.echo("no run yet: `hospital-stream run --days 30 --speed max` starts one")
    else:
        click.echo(f"run {run[0]} (seed {run[1]['seed']}, {run[1]['beds']} beds)")
    click.echo(f"simulated date   {date[0] if date else '-'} (day {last_day} of {settings.schedule_days})")
    click.echo(f"days stored      {last_day + 1}")
    if size:
        planned = _plan(settings, settings.schedule_days)["bytes"]
        click.echo(
            f"database size    {size[0] / 1e6:,.1f} MB of {planned / 1e6:,.0f} MB planned for "
            f"{settings.schedule_days} days ({100 * size[0] / planned:.0f}%)"
        )
    for table, count in counts.items():
        click.echo(f"  {table:18} {count:>12,}")
    assert stream is not None and dead is not None
    click.echo(f"transfers        streamed {stream[0]:,}, in batches {stream[1]:,}, both {stream[2]:,}")
    click.echo(f"dead letters     {dead[0]:,}")
    click.echo(f"consumer lag     {_consumer_lag(settings)}")


def _plan(settings: Settings, days: int) -> dict[str, Any]:
    from hospital_stream import sim  # imported here: they load NumPy and the model
    from hospital_stream.tools import plan

    return plan.cached_estimate(sim.HospitalConfig.from_settings(settings), days, settings.home / "plans")


@main.command("plan")
@click.option("--days", type=click.IntRange(min=1), help="Simulated days (default: HOSPITAL_SCHEDULE_DAYS).")
@click.option("--beds", type=click.IntRange(min=1), help="Beds (default: HOSPITAL_BEDS).")
@click.option(
    "--population", type=click.IntRange(min=1), help="Catchment size (default: HOSPITAL_POPULATION)."
)
@click.option("--seed", type=click.IntRange(min=0), help="Simulation seed (default: HOSPITAL_SEED).")
@friendly_errors
def plan_command(days: int | None, beds: int | None, population: int | None, seed: int | None) -> None:
    """Predict rows and bytes per table of a run before it starts (needs no broker or database:
    the simulator runs a sample of days and the rest is extrapolated)."""
    settings = _settings(beds=beds, population=population, seed=seed)
    days = days or settings.schedule_days
    planned = _plan(settings, days)
    click.echo(f"{days} simulated days of {settings.beds:,} beds and {settings.population:,} people:")
    for table, figures in planned["tables"].items():
        click.echo(f"  {table:18} {figures['rows']:>14,} rows {figures['bytes'] / 1e6:>10,.1f} MB")
    click.echo(
        f"  {'total':18} {planned['rows']:>14,} rows {planned['bytes'] / 1e6:>10,.1f} MB "
        f"(database, catalog included; {planned['sampled_days']} days simulated, the rest extrapolated)"
    )


def _consumer_lag(settings: Settings) -> str:
    """Messages the worker's consumer group has not committed yet, per topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    async def lag() -> str:
        consumer = AIOKafkaConsumer(
            bootstrap_servers="{}:{}".format(*settings.kafka_address),
            group_id=settings.app_id,
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        await consumer.start()
        try:
            topics = sorted(t for t in await consumer.topics() if t.startswith(settings.topic_prefix + "."))
            parts = [
                TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            ends = await consumer.end_offsets(parts) if parts else {}
            behind: dict[str, int] = {}
            for tp in parts:
                committed = await consumer.committed(tp) or 0
                behind[tp.topic] = behind.get(tp.topic, 0) + max(0, ends[tp] - committed)
        finally:
            await consumer.stop()
        return ", ".join(f"{t} {n:,}" for t, n in behind.items()) or "no topics yet"

    try:
        socket.create_connection(settings.kafka_address, timeout=2).close()
    except OSError:
        return f"unknown: no broker answers at {settings.kafka_url}"
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the reason is reported below
    try:
        return asyncio.run(asyncio.wait_for(lag(), 10))
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"unknown: the broker at {settings.kafka_url} did not answer ({type(exc).__name__})"


@main.command("validate")
@click.option(
    "--from", "first", type=click.IntRange(min=0), default=0, show_default=True, help="First day judged."
)
@click.option(
    "--to", "last", type=click.IntRange(min=0), help="Last day judged  [default: last complete day]"
)
@friendly_errors
def validate(first: int, last: int | None) -> None:
    """Check the stored data's invariants; exit 1 with a report if any fails.

    The checks judge the days 30 simulated days at a time, each window's queries reading only
    its days; a line on stderr reports each window."""
    from hospital_stream.tools.validate import run_checks

    if last is not None and last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")

    def progress(lo: int, hi: int, seconds: float) -> None:
        click.echo(f"checked days {lo}..{hi} in {seconds:.2f} s", err=True)

    with _database(_settings()) as conn:
        day, outcomes = run_checks(conn, first, last, progress)
    if day < 0:
        raise click.ClickException("no complete day stored yet: nothing to validate")
    if day < first:
        raise click.ClickException(f"day {first} is not completely stored yet (last complete day: {day})")
    click.echo(f"validating days {first}..{day}")
    for outcome in outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        click.echo(
            f"{mark} {outcome.check.name}: {outcome.check.description}"
            + ("" if outcome.ok else f" -- {outcome.violations:,} violations")
        )
        for row in outcome.sample:
            click.echo(f"       e.g. {row}")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(outcomes)} checks failed", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"all {len(outcomes)} checks passed")


@main.group("dlq")
def dlq_group() -> None:
    """The dead-letter store: messages and rows that could not be stored, with the reason."""


@dlq_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Include dead letters already replayed.")
@friendly_errors
def dlq_list(limit: int, show_all: bool) -> None:
    """List dead letters, newest first."""
    with _database(_settings()) as conn:
        rows = conn.execute(
            'SELECT dead_letter_id, topic, partition, "offset", row_number, payload_bytes, reason,'
            " replayed_at FROM dead_letters WHERE %s OR replayed_at IS NULL"
            " ORDER BY dead_letter_id DESC LIMIT %s",
            (show_all, limit),
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL").fetchone()
    for letter_id, topic, partition, offset, row_number, size, reason, replayed in rows:
        where = f"{topic}[{partition}]@{offset}" + (f" row {row_number}" if row_number else "")
        note = f" (replayed {replayed:%Y-%m-%d %H:%M})" if replayed else ""
        click.echo(f"{letter_id:>8}  {where:48} {size:>8} B  {reason[:120]}{note}")
    click.echo(f"{total[0] if total else 0:,} not replayed")


@dlq_group.command("replay")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1))
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter not yet replayed.")
@friendly_errors
def dlq_replay(ids: tuple[int, ...], replay_all: bool) -> None:
    """Try dead letters again: whole messages go back to their topic; rows are written again.

    A replayed message that is still bad becomes a new dead letter; a row that is still bad
    stays as it is and its reason is shown.
    """
    if not ids and not replay_all:
        raise ConfigError("name dead-letter ids to replay, or --all")
    settings = _settings()
    with _embedded_postgres(settings):
        _replay_letters(settings, ids, replay_all)


def _replay_letters(settings: Settings, ids: tuple[int, ...], replay_all: bool) -> None:
    with _database(settings, write=True) as conn:
        letters = conn.execute(
            "SELECT dead_letter_id, topic, message_key, row_number, table_name, payload, payload_bytes"
            " FROM dead_letters WHERE replayed_at IS NULL AND (%s OR dead_letter_id = ANY(%s))"
            " ORDER BY dead_letter_id",
            (replay_all, list(ids)),
        ).fetchall()
    if not letters:
        click.echo("nothing to replay")
        return
    done = asyncio.run(_replay(settings, letters))
    with _database(settings, write=True) as conn:
        conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE dead_letter_id = ANY(%s)", (done,))
    click.echo(f"replayed {len(done)} of {len(letters)}")


async def _replay(settings: Settings, letters: list[Any]) -> list[int]:
    """Send whole messages back to their topics and write single rows again."""
    import psycopg
    from aiokafka import AIOKafkaProducer

    from hospital_stream.schema import TABLES
    from hospital_stream.sink import RowsMissing, apply_rows

    done = []
    messages = [row for row in letters if row[3] == 0]
    if messages:
        producer = AIOKafkaProducer(
            bootstrap_servers="{}:{}".format(*settings.kafka_address),
            max_batch_size=1 if settings.embedded else 16384,
            max_request_size=2 * 1024 * 1024,
        )
        try:
            await producer.start()
        except Exception as exc:
            raise HospitalStreamError(f"cannot reach the broker at {settings.kafka_url}: {exc}") from exc
        try:
            for letter_id, topic, key, _, _, payload, size in messages:
                if len(payload) < size:
                    click.echo(
                        f"{letter_id}: only the first {len(payload)} of {size} bytes were kept; skipped"
                    )
                    continue
                await producer.send_and_wait(topic, bytes(payload), key=bytes(key) if key else None)
                done.append(letter_id)
        finally:
            await producer.stop()
    rows = [row for row in letters if row[3] > 0]
    if rows:
        try:
            conn = await psycopg.AsyncConnection.connect(settings.database_url)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {str(exc).splitlines()[0]}") from exc
        async with conn:
            for letter_id, _, _, _, table, payload, _ in rows:
                try:
                    async with conn.transaction():
                        await apply_rows(conn, TABLES[table], bytes(payload), 1)
                    done.append(letter_id)
                except (psycopg.DataError, psycopg.IntegrityError, RowsMissing) as exc:
                    click.echo(f"{letter_id}: still rejected: {str(exc).splitlines()[0]}")
    return done


@main.command("export")
@click.option(
    "--format",
    "fmt",
    default="csv",
    show_default=True,
    metavar="csv|parquet|fhir",
    help="CSV or Parquet files per table, or FHIR R4 bulk-data NDJSON per resource type.",
)
@click.option(
    "--out", "out_dir", required=True, metavar="DIR", help="Folder for the files (created if missing)."
)
@click.option(
    "--tables",
    multiple=True,
    metavar="T1,T2",
    help="Tables (csv, parquet) or resource types (fhir), comma-separated or repeated. Default: all.",
)
@click.option("--from", "date_from", metavar="YYYY-MM-DD", help="First day (SAST) of rows to export.")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", help="Last day (SAST, inclusive) of rows to export.")
@friendly_errors
def export(
    fmt: str, out_dir: str, tables: tuple[str, ...], date_from: str | None, date_to: str | None
) -> None:
    """Export tables as CSV or Parquet files, or as FHIR R4 NDJSON, streamed in bounded memory.

    --from/--to keep the rows whose time column (admitted_at, charted_at, ...) falls on those
    days; see docs/exports.md for what each table and resource type uses.
    """
    from hospital_stream.tools import export as exports

    plan = exports.plan(fmt, out_dir, tables, date_from, date_to)
    settings = _settings()
    started, rows, size = time.monotonic(), 0, 0
    with _database(settings) as conn:
        progress = exports.ConsoleProgress(tty=sys.stdout.isatty())
        for written in exports.run(conn, plan, progress, settings.start_date):
            click.echo(written.summary())
            rows, size = rows + written.rows, size + written.size_bytes
    names, items = ("resource types", "resources") if plan.fmt == "fhir" else ("tables", "rows")
    click.echo(
        f"exported {len(plan.names)} {names} to {plan.out_dir}: {rows:,} {items},"
        f" {size / 1e6:,.1f} MB in {time.monotonic() - started:.1f} s"
    )
