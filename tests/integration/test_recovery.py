"""Crashes and outages: the worker is SIGKILLed at each named failpoint, PostgreSQL is stopped
or crashed mid-run, the broker restarted empty, the worker frozen; each time the run ends with
exactly the rows of an uninterrupted run. The worker runs as the least-privileged writer login,
as in production, and each test records where its faults landed (``record_property``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from hospital_stream.devstack import stack
from hospital_stream.devstack.postgres import crash_postgres
from hospital_stream.settings import DEFAULT_WORKER_USER, Settings
from tests.helpers import (
    BIN,
    DAYS,
    STARTED,
    assert_same_records,
    assert_valid,
    cli,
    data_checksums,
    failpoint_hits,
    hospital_env,
    last_day,
    process_state,
    start,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start_run(env: dict[str, str], log, speed: str = "max") -> subprocess.Popen:
    remaining = DAYS - max(0, last_day(env["HOSPITAL_DATABASE_URL"]) + 1)
    return start(
        [str(BIN / "hospital-stream"), "run", "--days", str(max(remaining, 1)), "--speed", speed], env, log
    )


def _wait_for_day(url: str, run: subprocess.Popen, day: int, timeout: float = 120) -> None:
    """Until ``day`` is stored, the run ended, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while last_day(url) < day and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)


#: backpressure for the kill test: at most this many days sent and not yet stored, so that a
#: killed run leaves at most this many days in the topic for the next run's sink
UNSUNK = 2

#: where the kill test kills the worker, (point, nth hit) in order, in groups that each start on an
#: empty database: day 0's chunks, and the sink's commit points (whose buffers hold replayed
#: messages of stored days after a restart), land where their bound below holds only on a first run
KILL_GROUPS = {
    "day0-then-generator-and-copy": [
        ("generator.day0_chunks", 7),
        ("generator.before_closing", 3),
        ("sink.mid_copy", 4),
    ],
    "before-commit-then-revoked": [("sink.before_commit", 5), ("rebalance.revoked", 1)],
    "after-commit-then-assigned": [("sink.after_commit", 6), ("rebalance.assigned", 1)],
}


def _day_bounds(point: str, nth: int, stored_before: int) -> tuple[int, int] | None:
    """The simulated days the ``nth`` hit of ``point`` may land on, when days up to
    ``stored_before`` were stored as the run began (None: a point that knows no day).

    A restarted run's generator resumes after the last complete day, which its sink may first
    push up to UNSUNK days on by storing what the killed run left in the topic. Each day sent
    passes ``generator.before_closing`` once, and each day not yet stored COPYs at least one
    chunk (a stored chunk is skipped before its COPY). A first run's sink buffer ``n`` holds
    only days the generator may have sent: at most UNSUNK days past those stored by buffers
    1..n-1, which each store at most UNSUNK more days.
    """
    if point == "generator.day0_chunks":
        return 0, 0
    if point.startswith("rebalance."):
        return None
    if point in ("sink.before_commit", "sink.after_commit"):
        assert stored_before == -1, "a commit point's bound holds on a first run only"
        return 0, nth * UNSUNK - 1
    return stored_before + 1, stored_before + UNSUNK + nth


def _kill_at(env: dict[str, str], point: str, nth: int, tmp_path: Path, log) -> str:
    """Run with ``point`` armed to SIGKILL the worker at its ``nth`` hit; assert where it landed
    and return that as a line for the summary."""
    url = env["HOSPITAL_DATABASE_URL"]
    stored_before, rows_before = last_day(url), _stored_rows(url)
    hits_log = tmp_path / f"{point}.jsonl"
    armed = {**env, "HOSPITAL_FAILPOINT": f"{point}:{nth}:kill", "HOSPITAL_FAILPOINT_LOG": str(hits_log)}
    run = _start_run(armed, log)
    code = run.wait(timeout=240)
    output = (tmp_path / "runs.log").read_text()
    assert code == 1 and "exit status -9" in output, output[-3000:]
    hits = failpoint_hits(hits_log)
    (landed,) = [hit for hit in hits if hit.get("action")]
    assert landed["point"] == point and landed["hit"] == nth and landed["action"] == "kill", hits
    assert hits[-1] is landed, "the worker died at its nth hit"
    bounds = _day_bounds(point, nth, stored_before)
    if bounds is None:
        assert landed["day"] is None
        # a rebalance point passes before the worker holds partitions: it stored nothing
        assert _stored_rows(url) == rows_before
    else:
        assert bounds[0] <= landed["day"] <= bounds[1], (point, nth, stored_before, landed)
    where = "no day" if bounds is None else f"day {landed['day']} (bound {bounds[0]}..{bounds[1]})"
    return f"SIGKILL at {point} hit {nth}: {where}, days up to {stored_before} stored before the run"


def _stored_rows(url: str) -> int:
    return sum(count for count, _ in data_checksums(url).values())


@pytest.mark.parametrize("group", KILL_GROUPS)
def test_worker_killed_at_each_failpoint_ends_identical(
    group, reference_run, embedded_stack, tmp_path, record_property
):
    env = hospital_env(embedded_stack, default_logins=True, HOSPITAL_MAX_UNSUNK_DAYS=str(UNSUNK))
    url = env["HOSPITAL_DATABASE_URL"]
    assert cli(env, "db", "migrate").returncode == 0  # the run's database and logins, empty
    with (tmp_path / "runs.log").open("w") as log:
        for point, nth in KILL_GROUPS[group]:
            record_property("fault", _kill_at(env, point, nth, tmp_path, log))
        final = _start_run(env, log)
        assert final.wait(timeout=300) == 0, (tmp_path / "runs.log").read_text()[-3000:]
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


def test_postgres_outage_mid_run_loses_nothing(reference_run, new_stack_settings, tmp_path, record_property):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(stack_settings, default_logins=True)
    url = env["HOSPITAL_DATABASE_URL"]
    with (tmp_path / "run.log").open("w") as log:
        run = _start_run(env, log, speed="900")  # a day a second: most days come after the outage
        _wait_for_day(url, run, 1)
        assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        stored_before = last_day(url)
        stack.down(stack_settings, only=["postgres"])
        outage_started = time.monotonic()
        time.sleep(20)
        assert run.poll() is None, "the worker died while PostgreSQL was down"
        stack.up(stack_settings, only=["postgres"])
        outage = time.monotonic() - outage_started
        assert run.wait(timeout=240) == 0, (tmp_path / "run.log").read_text()[-3000:]
    record_property("fault", f"PostgreSQL stopped for {outage:.1f} s with days up to {stored_before} stored")
    assert stored_before < DAYS - 1
    assert "PostgreSQL unavailable" in (tmp_path / "run.log").read_text()
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


def test_broker_restarted_empty_mid_run_resumes_identical(
    reference_run, new_stack_settings, tmp_path, record_property
):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    # a stall would heal, not hang
    env = hospital_env(stack_settings, default_logins=True, HOSPITAL_STALL_SECONDS="60")
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log, speed="150")  # 6 s a day: most days come after the loss
        _wait_for_day(url, run, 2)
        assert run.poll() is None, log_path.read_text()[-3000:]
        stored_before = last_day(url)
        stack.down(stack_settings, only=["broker"])  # every topic, offset and changelog is gone
        stack.up(stack_settings, only=["broker"])
        assert run.wait(timeout=400) == 0, log_path.read_text()[-3000:]
    record_property("fault", f"broker restarted empty with days up to {stored_before} of {DAYS} stored")
    assert stored_before < DAYS - 1
    output = log_path.read_text()
    assert "the broker lost its messages" in output and "Traceback" not in output
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


def test_postgres_down_past_the_limit_stops_clearly_and_a_new_run_ends_identical(
    reference_run, new_stack_settings, tmp_path, record_property
):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(stack_settings, default_logins=True, HOSPITAL_DB_OUTAGE_SECONDS="6")
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log, speed="900")
        _wait_for_day(url, run, 1)
        stored_before = last_day(url)
        stack.down(stack_settings, only=["postgres"])
        down_at = time.monotonic()
        code = run.wait(timeout=120)
        stopped_after = time.monotonic() - down_at
        stack.up(stack_settings, only=["postgres"])
        output = log_path.read_text()
        assert code == 1, output[-3000:]
        assert "PostgreSQL unreachable for" in output and "HOSPITAL_DB_OUTAGE_SECONDS=6" in output
        assert "Traceback" not in output
        final = _start_run(env, log)
        assert final.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    record_property(
        "fault",
        f"PostgreSQL stopped with days up to {stored_before} stored; the worker stopped"
        f" {stopped_after:.1f} s later (limit 6 s)",
    )
    assert stopped_after < 60
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


def test_a_frozen_worker_is_restarted_and_the_run_ends_identical(
    reference_run, embedded_stack, tmp_path, record_property
):
    # a restart takes ~15 s
    env = hospital_env(embedded_stack, default_logins=True, HOSPITAL_STALL_SECONDS="25")
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log, speed="300")  # 3 s a day: most days come after the freeze
        _wait_for_day(url, run, 1)
        assert run.poll() is None and last_day(url) < DAYS - 2, log_path.read_text()[-3000:]
        (worker,) = (int(pid) for pid in Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split())
        frozen_with = last_day(url)
        os.kill(worker, signal.SIGSTOP)  # alive, holding its partitions, storing nothing
        assert run.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    output = log_path.read_text()
    assert "the worker stored nothing for too long" in output and "Traceback" not in output
    assert not Path(f"/proc/{worker}").exists()
    record_property("fault", f"worker {worker} SIGSTOPped with days up to {frozen_with} stored")
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


def _sessions_in_transaction(env: dict[str, str]) -> list[tuple[str, str]]:
    """(login, state) of the sessions of the run's database inside a transaction, but ours, as
    the worker's login sees them (PostgreSQL shows a session's state to its own role only)."""
    with psycopg.connect(env["HOSPITAL_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT usename, state FROM pg_stat_activity WHERE datname = current_database()"
            " AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        ).fetchall()
    return [(str(login), str(state)) for login, state in rows]


def _crash_recoveries(stack_settings: Settings) -> int:
    log = stack.status(stack_settings)["postgres"].log_file
    return log.read_text(errors="replace").count("automatic recovery in progress")


#: the sink's transaction the crash test pauses the worker in
PAUSE_AT = 4


def test_postgres_crashed_mid_transaction_recovers_and_the_run_ends_identical(
    reference_run, new_stack_settings, tmp_path, record_property
):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    hits_log = tmp_path / "hits.jsonl"
    env = hospital_env(
        stack_settings,
        default_logins=True,
        HOSPITAL_MAX_UNSUNK_DAYS=str(UNSUNK),  # a transaction or so a day: most days come after
        HOSPITAL_FAILPOINT=f"sink.before_commit:{PAUSE_AT}:pause",
        HOSPITAL_FAILPOINT_LOG=str(hits_log),
    )
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log)
        paused = wait_until(
            "the worker paused at sink.before_commit",
            lambda: next((hit for hit in failpoint_hits(hits_log) if hit.get("action")), None),
            180,
            every=0.2,
            give_up=lambda: run.poll() is not None,
            context=lambda: log_path.read_text()[-3000:],
        )
        wait_until("a stopped worker", lambda: process_state(paused["pid"]) == "T", 30, every=0.05)
        stored_before = last_day(url)
        in_transaction = _sessions_in_transaction(env)
        assert (DEFAULT_WORKER_USER, "idle in transaction") in in_transaction, in_transaction
        recoveries = _crash_recoveries(stack_settings)
        killed = crash_postgres(stack_settings)
        os.kill(paused["pid"], signal.SIGCONT)
        assert run.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    record_property(
        "fault",
        f"paused the worker at sink.before_commit hit {PAUSE_AT} (day {paused['day']}, days up to"
        f" {stored_before} stored), SIGKILLed postmaster {killed} under its open transaction, then SIGCONT",
    )
    assert _crash_recoveries(stack_settings) == recoveries + 1, "PostgreSQL recovered from a crash"
    output = log_path.read_text()
    assert "PostgreSQL unavailable" in output and "Traceback" not in output
    assert stored_before < DAYS - 1
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)


DASHBOARD_ENDPOINTS = ("wards", "staffing", "schedule", "pipeline", "reconciliation", "charts")


def _dashboard_statuses(base: str) -> dict[str, int | str]:
    """Each dashboard JSON endpoint's HTTP status (or the error that took its place)."""
    statuses: dict[str, int | str] = {}
    for name in DASHBOARD_ENDPOINTS:
        try:
            with urllib.request.urlopen(f"{base}/dashboard/api/{name}", timeout=10) as response:
                json.load(response)
                statuses[name] = response.status
        except urllib.error.HTTPError as exc:
            statuses[name] = exc.code
        except OSError as exc:
            statuses[name] = type(exc).__name__
    return statuses


def test_postgres_crashed_under_the_dashboard_and_an_export(new_stack_settings, tmp_path, record_property):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(
        stack_settings,
        default_logins=True,
        HOSPITAL_SPEED="max",
        HOSPITAL_RUN_UNTIL_DAY="4",
        HOSPITAL_POPULATION="600000",  # an export long enough to crash PostgreSQL under it
    )
    url = env["HOSPITAL_DATABASE_URL"]
    base = f"http://127.0.0.1:{env['HOSPITAL_WEB_PORT']}"
    assert cli(env, "db", "migrate").returncode == 0
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [str(BIN / "hospital-stream"), "worker", "--loglevel", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    STARTED.append(worker)

    def worker_log() -> str:
        return log_path.read_text()[-3000:]

    wait_until(
        "days 0..3 stored",
        lambda: last_day(url) >= 3,
        240,
        give_up=lambda: worker.poll() is not None,
        context=worker_log,
    )
    assert set(_dashboard_statuses(base).values()) == {200}

    during: list[dict[str, int | str]] = []
    stop = threading.Event()

    def read_dashboard() -> None:
        while not stop.is_set():
            during.append(_dashboard_statuses(base))

    reader = threading.Thread(target=read_dashboard, daemon=True)
    reader.start()
    export = subprocess.Popen(
        [str(BIN / "hospital-stream"), "export", "--format", "csv", "--out", str(tmp_path / "first")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    STARTED.append(export)
    wait_until(
        "the export reading",
        lambda: _export_reading(env),
        120,
        every=0.02,
        give_up=lambda: export.poll() is not None,
        context=lambda: "the export ended first",
    )
    killed = crash_postgres(stack_settings)
    out, err = export.communicate(timeout=120)
    assert export.returncode == 1, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "PostgreSQL" in err, err
    again = cli(env, "export", "--format", "csv", "--out", str(tmp_path / "second"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "second" / "patients.csv").read_text().count("\n") == 600_000 + 1
    wait_until(
        "every dashboard endpoint answering again",
        lambda: set(_dashboard_statuses(base).values()) == {200},
        60,
        give_up=lambda: worker.poll() is not None,
        context=worker_log,
    )
    stop.set()
    reader.join(timeout=60)
    assert worker.poll() is None, "the worker outlived the crash"
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    failed = sorted({f"{name} {status}" for seen in during for name, status in seen.items() if status != 200})
    record_property(
        "fault",
        f"SIGKILLed postmaster {killed} under a CSV export and {len(during)} rounds of dashboard reads;"
        f" the export said: {err.strip()}; the dashboard meanwhile: {', '.join(failed) or 'all 200'}",
    )
    assert "Traceback" not in log_path.read_text()


def _export_reading(env: dict[str, str]) -> bool:
    """Whether the export's snapshot transaction is reading the patients (the reader's own
    sessions show their queries to the reader)."""
    with psycopg.connect(Settings.from_env(env).reader_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE 'COPY (SELECT%%patients%%'"
            " AND state = 'active'"
        ).fetchone()
    return bool(row and row[0])
