"""A bare worker (``faust -A hospital_stream.app worker``, no ``run`` around it) whose sink cannot
commit exits by itself with status 70 within its stall limit, and keeps what it stored before."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.helpers import (
    DAYS,
    assert_same_records,
    assert_valid,
    cli,
    finish_run,
    hospital_env,
    last_day,
    start_bare_worker,
    wait_for_day,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 10  # HOSPITAL_STALL_SECONDS; at speed 300 three stream slots take 1.8 s, so this is the limit


def test_a_worker_whose_sink_is_locked_out_exits_70_within_its_limit(
    reference_run, embedded_stack, tmp_path, record_property
):
    env = hospital_env(
        embedded_stack,
        default_logins=True,
        HOSPITAL_SPEED="300",  # 3 s a simulated day: most days come after the lock
        HOSPITAL_STALL_SECONDS=str(LIMIT),
        HOSPITAL_RUN_UNTIL_DAY=str(DAYS),
    )
    url = env["HOSPITAL_DATABASE_URL"]
    assert cli(env, "stack", "up").returncode == 0  # the run's database, migrated
    log = tmp_path / "worker.log"
    worker = start_bare_worker(env, log)
    wait_for_day(url, worker, log, 1)
    with psycopg.connect(url) as lock:  # the test's own transaction holds the lock until rollback
        # every batch chunk claims its row in the ledger: no buffer with a chunk can commit
        lock.execute("LOCK TABLE ingested_chunks IN EXCLUSIVE MODE")
        locked_at = time.monotonic()
        stored_at_lock = last_day(url)
        assert stored_at_lock < DAYS - 2, "the run ended before the lock"
        code = worker.wait(timeout=LIMIT + 120)
        waited = time.monotonic() - locked_at
        lock.rollback()
    output = log.read_text()
    record_property(
        "fault",
        f"sink locked out with days up to {stored_at_lock} stored; the worker exited {code}"
        f" {waited:.1f} s after the lock (limit {LIMIT} s)",
    )
    assert code == 70, output[-3000:]
    assert LIMIT - 1 <= waited <= LIMIT + 30, "within the bound, and not before it"
    stall_lines = [line for line in output.splitlines() if "stored nothing for" in line]
    assert len(stall_lines) == 1 and "HOSPITAL_STALL_SECONDS" in stall_lines[0], output[-3000:]
    assert "Traceback" not in output
    assert last_day(url) >= stored_at_lock, "what was stored before the stall stays stored"
    assert_valid(env)
    finished = finish_run(env)  # the next worker resumes from the last complete day
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
