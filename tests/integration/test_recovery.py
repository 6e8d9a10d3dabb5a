"""Crashes and outages: the worker is SIGKILLed at seeded random moments, PostgreSQL is stopped
mid-run; either way the run ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hospital_stream.devstack import stack
from hospital_stream.settings import Settings
from tests.helpers import BIN, DAYS, cli, data_checksums, hospital_env, last_day, start

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


def test_worker_killed_at_random_moments_ends_identical(reference_run, embedded_stack, tmp_path):
    env = hospital_env(embedded_stack)
    url = env["HOSPITAL_DATABASE_URL"]
    rng = random.Random(20200101)
    kills = []
    with (tmp_path / "runs.log").open("w") as log:
        for _ in range(5):
            run = _start_run(env, log)
            delay = rng.uniform(3.0, 16.0)
            time.sleep(delay)
            if run.poll() is not None:
                break
            run.kill()  # SIGKILL: no shutdown, no commit, no goodbye to the consumer group
            run.wait()
            kills.append((round(delay, 1), last_day(url)))
        final = _start_run(env, log)
        assert final.wait(timeout=300) == 0, (tmp_path / "runs.log").read_text()[-3000:]
    print(f"survived {len(kills)} kills (seconds after start, last stored day): {kills}")
    assert len(kills) == 5
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    assert cli(env, "validate").returncode == 0


def test_postgres_outage_mid_run_loses_nothing(reference_run, new_stack_settings, tmp_path):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(stack_settings)
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
    print(f"PostgreSQL was down for {outage:.1f} s, with days up to {stored_before} stored")
    assert stored_before < DAYS - 1
    assert "PostgreSQL unavailable" in (tmp_path / "run.log").read_text()
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    assert cli(env, "validate").returncode == 0


def test_broker_restarted_empty_mid_run_resumes_identical(reference_run, new_stack_settings, tmp_path):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(stack_settings, HOSPITAL_STALL_SECONDS="60")  # a stall would heal, not hang
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
    print(f"broker restarted empty with days up to {stored_before} of {DAYS} stored")
    assert stored_before < DAYS - 1
    output = log_path.read_text()
    assert "the broker lost its messages" in output and "Traceback" not in output
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    assert cli(env, "validate").returncode == 0


def test_postgres_down_past_the_limit_stops_clearly_and_a_new_run_ends_identical(
    reference_run, new_stack_settings, tmp_path
):
    stack_settings: Settings = new_stack_settings()
    stack.up(stack_settings)
    env = hospital_env(stack_settings, HOSPITAL_DB_OUTAGE_SECONDS="6")
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log, speed="900")
        _wait_for_day(url, run, 1)
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
    print(f"the worker stopped {stopped_after:.1f} s after PostgreSQL went down (limit 6 s)")
    assert stopped_after < 60
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    assert cli(env, "validate").returncode == 0


def test_a_frozen_worker_is_restarted_and_the_run_ends_identical(reference_run, embedded_stack, tmp_path):
    env = hospital_env(embedded_stack, HOSPITAL_STALL_SECONDS="25")  # a restart takes ~15 s
    url = env["HOSPITAL_DATABASE_URL"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = _start_run(env, log, speed="300")  # 3 s a day: most days come after the freeze
        _wait_for_day(url, run, 1)
        assert run.poll() is None and last_day(url) < DAYS - 2, log_path.read_text()[-3000:]
        (worker,) = (int(pid) for pid in Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split())
        os.kill(worker, signal.SIGSTOP)  # alive, holding its partitions, storing nothing
        assert run.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    output = log_path.read_text()
    assert "the worker stored nothing for too long" in output and "Traceback" not in output
    assert not Path(f"/proc/{worker}").exists()
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    assert cli(env, "validate").returncode == 0
