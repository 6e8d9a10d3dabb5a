"""Failpoints: the spec's parsing, the log lines, and a process that really kills or stops itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import timeit
from pathlib import Path

import pytest

from hospital_stream import failpoints
from hospital_stream.errors import ConfigError
from hospital_stream.settings import Settings
from tests.helpers import failpoint_hits, process_state, wait_until


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("sink.mid_copy", failpoints.Failpoint("sink.mid_copy", 1, "kill")),
        ("sink.before_commit:4", failpoints.Failpoint("sink.before_commit", 4, "kill")),
        ("rebalance.revoked:2:pause", failpoints.Failpoint("rebalance.revoked", 2, "pause")),
    ],
)
def test_a_spec_names_the_point_the_hit_and_the_action(text, expected):
    assert failpoints.parse(text) == expected
    if expected is not None:  # Settings.to_env writes it back as it was read
        assert failpoints.parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sink.nowhere", "unknown failpoint 'sink.nowhere'; known: sink.mid_copy, "),
        ("sink.mid_copy:0", "the hit count '0' must be a whole number of at least 1"),
        ("sink.mid_copy:x", "the hit count 'x' must be a whole number of at least 1"),
        ("sink.mid_copy:2:explode", "the action 'explode' must be one of kill, pause"),
    ],
)
def test_a_bad_spec_is_one_clear_line(text, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"HOSPITAL_FAILPOINT": text})
    assert str(raised.value).startswith(f"HOSPITAL_FAILPOINT={text!r}: {message}")
    assert "\n" not in str(raised.value)


def test_only_the_armed_point_counts_and_logs(tmp_path):
    log = tmp_path / "hits.jsonl"
    failpoints.arm(failpoints.Failpoint("generator.before_closing", 99), log)
    try:
        failpoints.hit("sink.mid_copy", 1)
        failpoints.hit("generator.before_closing", 4)
        failpoints.hit("generator.before_closing")
    finally:
        failpoints.arm(None)
    failpoints.hit("generator.before_closing", 5)  # disarmed: nothing
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["point"], x["hit"], x["day"]) for x in lines] == [
        ("generator.before_closing", 1, 4),
        ("generator.before_closing", 2, None),
    ]
    assert all("action" not in x and x["time"] > 0 for x in lines)


def _hitting(tmp_path: Path, spec: str, hits: int) -> subprocess.Popen[str]:
    """A Python process that arms ``spec`` and passes its point ``hits`` times (day = hit number)."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hospital_stream import failpoints\n"
        "armed = failpoints.parse(sys.argv[1])\n"
        "failpoints.arm(armed, Path(sys.argv[2]))\n"
        f"for day in range({hits}):\n"
        "    failpoints.hit(armed.point, day)\n"
        "print('passed every hit')\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, spec, str(tmp_path / "hits.jsonl")], stdout=subprocess.PIPE, text=True
    )


def test_kill_sigkills_the_process_at_the_nth_hit_after_logging_it(tmp_path):
    process = _hitting(tmp_path, "sink.after_commit:3:kill", 10)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and out == ""
    hits = failpoint_hits(tmp_path / "hits.jsonl")
    assert [(x["hit"], x["day"], x.get("action")) for x in hits] == [
        (1, 0, None),
        (2, 1, None),
        (3, 2, "kill"),
    ]
    assert {x["pid"] for x in hits} == {process.pid}


def test_pause_stops_the_process_until_it_is_continued(tmp_path):
    process = _hitting(tmp_path, "rebalance.assigned:2:pause", 4)
    try:
        wait_until(
            "the pause", lambda: any(x.get("action") for x in failpoint_hits(tmp_path / "hits.jsonl")), 60
        )
        wait_until("a stopped process", lambda: process_state(process.pid) == "T", 10, every=0.05)
        assert process.poll() is None
        process.send_signal(signal.SIGCONT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and out == "passed every hit\n"
    assert [x["hit"] for x in failpoint_hits(tmp_path / "hits.jsonl")] == [1, 2, 3, 4]


def test_an_unarmed_point_costs_about_a_function_call():
    failpoints.arm(None)
    calls = 200_000
    cost = min(timeit.repeat(lambda: failpoints.hit("sink.mid_copy", 3), number=calls, repeat=5)) / calls
    print(f"an unarmed failpoint costs {cost * 1e9:.0f} ns per call (with the lambda's call)")
    assert cost < 2e-6  # a hit per COPY or chunk, each of which takes milliseconds
