"""The ``run`` supervisor: the worker as a child process, started again when the broker lost its
messages or when it stalls, stopped on Ctrl-C or SIGTERM, killed when ``run`` dies; and the
progress line read from PostgreSQL while it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from hospital_stream import db
from hospital_stream.errors import BrokerLost, HospitalStreamError, WorkerStalled
from hospital_stream.settings import Settings

#: a worker that outlives its stop request this long is killed (see the embedded broker's defects)
WORKER_STOP_SECONDS = 60.0
#: the time a new worker may take to start, join its group (an old member's session expire
#: first) and recover its tables, before the backstop counts its quiet as a stall
WORKER_START_SECONDS = 60.0
#: restarts in one run: a worker that keeps failing is not worth restarting for ever
MAX_RESTARTS = 5
STALLED = -1  # _supervise's code for a worker it killed because it stalled
#: ``drain(stop_requested)``: wait until the worker's group committed what it consumed; None
#: when it has, else one line saying what is left
Drain = Callable[[Callable[[], bool]], str | None]
#: the backstop waits this many stall limits: the worker's own watchdog (WorkerStalled) exits
#: first, and this catches a worker too frozen to run it
BACKSTOP_STALL_LIMITS = 1.5
RESTART_REASONS = {
    BrokerLost.exit_code: "the broker lost its messages",
    WorkerStalled.exit_code: "the worker stalled",
    STALLED: "the worker stored nothing for too long",
}


def run_worker(
    settings: Settings,
    first_day: int,
    end_day: int,
    argv: list[str],
    plan: Callable[[], float] | None = None,
    drain: Drain | None = None,
) -> bool:
    """Supervise the worker (``argv``: ``hospital-stream worker``, a child process) until ``end_day``
    is stored or we are stopped; start it again when it exits because the broker lost its
    messages or it stalled. ``plan`` works out the run's planned bytes for the progress line;
    ``drain`` waits, once the last day is stored, until the worker has committed all it consumed,
    so that the dead letters of what it read are stored before it stops. True when the last day
    is stored, or when we were asked to stop (and the worker stopped)."""
    if first_day == 0:
        click.echo(f"day 0 loads the catchment population ({settings.population:,} people) first")
    click.echo(
        f"simulating days {first_day}..{end_day - 1} at speed {settings.speed or 'max'}; "
        f"dashboard {settings.web_url}dashboard/ (JSON: /occupancy/, /staff/, /metrics); Ctrl-C stops"
    )
    progress = Progress(settings, first_day, end_day, plan)
    env = {**os.environ, **settings.to_env()}
    del env["HOSPITAL_ADMIN_DATABASE_URL"]  # the worker gets no owner credentials
    restarts = 0
    with _termination_requests() as stop_requested:
        while True:
            # a process group of its own: Ctrl-C reaches only ``run``, which asks the worker to
            # stop with one SIGTERM, the one way a worker stops cleanly
            child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent, process_group=0)
            code = _supervise(child, progress, stop_requested, drain)
            if code not in RESTART_REASONS or stop_requested() or restarts >= MAX_RESTARTS:
                break
            restarts += 1
            click.echo(
                f"{RESTART_REASONS[code]}: starting the worker again from PostgreSQL's last complete day"
            )
    reached = progress.summary()
    if code != 0 and not reached and not stop_requested():
        raise HospitalStreamError(f"the worker stopped after an error (exit status {code}; its log is above)")
    return reached or stop_requested()


def _supervise(
    child: subprocess.Popen[bytes],
    progress: Progress,
    stop_requested: Callable[[], bool],
    drain: Drain | None = None,
) -> int:
    """Report progress until the child exits; ask it to stop when the last day is stored (and
    ``drain`` returned) or when we are asked to stop, and kill it if it does not within
    WORKER_STOP_SECONDS. A worker
    that stores nothing for its stall limit is killed (SIGKILL loses nothing: what it had not
    acknowledged is read again) and STALLED returned, so that it starts again: the backstop
    of the worker's own watchdog, for a worker too frozen to run it."""
    stall_limit = progress.settings.stall_limit * BACKSTOP_STALL_LIMITS
    # a new worker's stall is counted once it has had time to start: a member killed before it
    # joined its group leaves a stale member the next one waits for, so a backstop shorter than
    # the start could kill every new worker in turn and store nothing for ever
    progress.last_change = time.monotonic() + WORKER_START_SECONDS
    stop_sent_at: float | None = None
    while True:
        try:
            return child.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        if stop_sent_at is None:
            progress.report()
            if progress.reached or stop_requested():
                if progress.reached and drain is not None and not stop_requested():
                    left = drain(stop_requested)
                    if left:
                        click.echo(left, err=True)
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


class Progress:
    """Progress from PostgreSQL: complete days, rows/s, bytes against the plan, ETA. On a
    terminal one line updated in place every 2 s; otherwise a plain line every 10 s."""

    LOG_EVERY_SECONDS = 10.0

    def __init__(
        self,
        settings: Settings,
        first_day: int,
        end_day: int,
        plan: Callable[[], float] | None = None,
    ) -> None:
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
        self._planner = plan
        # the plan takes seconds (the catchment is built first): worked out beside the run
        if plan is not None:
            threading.Thread(target=self._plan, daemon=True).start()

    def _plan(self) -> None:
        with contextlib.suppress(Exception):  # a progress figure, never worth failing a run for
            if self._planner is not None:
                self.planned_bytes = float(self._planner())

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
