"""A clean stop mid-run: Ctrl-C (SIGINT to the process group of ``run``), SIGTERM to ``run`` and
SIGTERM to a bare ``faust worker`` each stop the timers and the generator before their producers,
print one line, no traceback and nothing critical, exit 0 (130 for Ctrl-C), and leave stored data
the next run resumes from."""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import (
    BIN,
    DAYS,
    assert_same_records,
    assert_valid,
    cli,
    finish_run,
    hospital_env,
    last_day,
    start,
    start_bare_worker,
    wait_for_day,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: the line a worker prints when it stops on request
STOP_LINE = "worker stops:"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-run", "sigterm-to-worker"])
def test_a_stop_mid_run_prints_one_line_and_the_next_run_resumes(
    how, reference_run, embedded_stack, tmp_path, record_property
):
    env = hospital_env(
        embedded_stack, default_logins=True, HOSPITAL_SPEED="300", HOSPITAL_RUN_UNTIL_DAY=str(DAYS)
    )
    url = env["HOSPITAL_DATABASE_URL"]
    log = tmp_path / "stop.log"
    if how == "sigterm-to-worker":
        assert cli(env, "stack", "up").returncode == 0  # the run's database, migrated
        process = start_bare_worker(env, log)
    else:
        with log.open("w") as out:  # a process group of its own, as a terminal gives it
            argv = [str(BIN / "hospital-stream"), "run", "--days", str(DAYS), "--speed", "300"]
            process = start(argv, env, out, start_new_session=True)
    wait_for_day(url, process, log, 1)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    output = log.read_text()
    stopped_at = last_day(url)
    record_property("fault", f"{how}: exit status {code}, days up to {stopped_at} of {DAYS} stored")
    assert code in ((0, 130) if how == "ctrl-c" else (0,)), output[-3000:]
    assert stopped_at < DAYS - 1, "the stop came after the last day"
    assert "Traceback" not in output and "CRITICAL" not in output, output[-3000:]
    assert "crash" not in output.lower() and "NotReady" not in output, output[-3000:]
    stop_lines = [line for line in output.splitlines() if STOP_LINE in line]
    assert len(stop_lines) == 1, output[-3000:]
    assert_valid(env)
    finished = finish_run(env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"simulating days {stopped_at + 1}.." in finished.stdout, "the next run resumes"
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
