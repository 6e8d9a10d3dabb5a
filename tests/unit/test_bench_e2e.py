"""The pure parts of benchmarks/bench_e2e.py: arguments, reading /metrics, quantiles, the report."""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import bench_e2e
from hospital_stream.metrics import Metrics
from hospital_stream.settings import Settings


def test_arguments_default_to_a_bounded_run_and_a_short_fast_clock_run():
    args = bench_e2e.parse_args([])
    assert (args.days, args.full, args.latency_days, args.latency_speed) == (200, False, 3, 60.0)
    assert bench_e2e.parse_args(["--full"]).full
    assert args.schema_at is None and bench_e2e.parse_args(["--schema-at", "11"]).schema_at == 11


@pytest.mark.parametrize(
    "argv", [["--days", "0"], ["--days", "2", "--full"], ["--latency-speed", "0"], ["--latency-speed", "inf"]]
)
def test_nonsense_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_e2e.parse_args(argv)
    assert exit_info.value.code == 2


def test_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (math.inf, 100.0)]
    assert bench_e2e.quantile(0.5, buckets) == pytest.approx(0.1)
    assert bench_e2e.quantile(0.7, buckets) == pytest.approx(0.15)
    assert bench_e2e.quantile(0.99, buckets) == pytest.approx(0.47)
    assert bench_e2e.quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == 0.1  # in +Inf: the top bound
    assert math.isnan(bench_e2e.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert math.isnan(bench_e2e.quantile(0.5, []))


def test_figures_come_from_a_real_scrape_of_the_worker_metrics():
    metrics = Metrics()
    with metrics.timed("route", 3):
        pass
    metrics.record_flush(0.5, messages=4, rows=100, transfers=1, dead_letters=0, message_bytes=2_000)
    for seconds in (0.05, 0.05, 0.3):
        metrics.latency.labels("database").observe(seconds)
    metrics.slot_lag.labels("slot").observe(0.01)
    parsed = bench_e2e.parse_metrics(metrics.render().decode())
    seconds = bench_e2e.labelled(parsed, "hospital_stage_seconds_total", "stage")
    messages = bench_e2e.labelled(parsed, "hospital_stage_messages_total", "stage")
    assert seconds["sink"] == 0.5 and messages["sink"] == 1 and messages["route"] == 3
    assert 0 <= seconds["route"] < 0.5 and seconds["generate"] == 0
    figures = bench_e2e.latency_figures(metrics.render().decode())
    assert figures["send -> PostgreSQL"]["count"] == 3
    assert 0.03 < figures["send -> PostgreSQL"]["p50"] <= 0.05
    assert 0.2 < figures["send -> PostgreSQL"]["p99"] <= 0.3
    assert figures["send -> occupancy table"]["count"] == 0
    assert math.isnan(figures["send -> occupancy table"]["p99"])
    assert figures["stream slot lateness"]["count"] == 1


SAME, HEAP = bench_e2e.SAME_SCHEMA, bench_e2e.HEAP_FLOOR


def _report():
    day0 = bench_e2e.Phase(
        "day 0",
        {"patients": 1_000_000, "wards": 10},
        100_000_000,
        20.0,
        {SAME: 2.0, HEAP: 1.0},
        {SAME: {"patients": 1.9, "wards": 0.01}, HEAP: {"patients": 0.9, "wards": 0.01}},
    )
    later = bench_e2e.Phase(
        "days 1..5",
        {"admissions": 200_000},
        30_000_000,
        10.0,
        {SAME: 0.5, HEAP: 0.25},
        {SAME: {"admissions": 0.45}, HEAP: {"admissions": 0.2}},
    )
    sampled = bench_e2e.Sampled(
        cpu_start={"worker": 0.0, "broker": 4.0, "postgres": 10.0},
        cpu_last={"worker": 25.5, "broker": 9.0, "postgres": 22.0},
    )
    return bench_e2e.Report(
        seed=1, beds=60, population=1_000_000, days=5, run_seconds=31.0, phases=[day0, later],
        stages={"generate": (3.0, 6.0), "sink": (25.0, 40.0)}, latency_days=1, latency_speed=60.0,
        latency={"send -> PostgreSQL": {"count": 15.0, "p50": 0.3, "p99": 0.5}}, sampled=sampled,
    )  # fmt: skip


def test_ratios_are_per_phase_and_overall_against_the_same_schema_and_the_heap_floor():
    (_day0, r0, f0), (_later, r1, f1), (both, r2, f2) = bench_e2e.comparisons(_report())
    assert r0 == pytest.approx(0.1) and r1 == pytest.approx(0.05)
    assert f0 == pytest.approx(0.05) and f1 == pytest.approx(0.025)
    assert both.total_rows == 1_200_010 and both.pipeline_seconds == 30.0
    assert both.copy_seconds == {SAME: 2.5, HEAP: 1.25}
    assert both.table_seconds[SAME] == {"patients": 1.9, "wards": 0.01, "admissions": 0.45}
    assert r2 == pytest.approx(2.5 / 30.0) and f2 == pytest.approx(1.25 / 30.0)


BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_cpu_seconds_count_a_process_tree_and_its_reaped_children():
    # a grandchild that burnt 0.3 s of CPU and was reaped counts, through its parent's c-times
    script = (
        f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {BUSY!r}])\n"
        "print('done', flush=True)\ntime.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"done\n"
        assert 0.3 <= bench_e2e.cpu_seconds(parent.pid) < 30
        assert bench_e2e.cpu_seconds(parent.pid) <= bench_e2e.cpu_seconds(os.getpid())  # below us
    finally:
        parent.kill()
        parent.wait()
    assert bench_e2e.cpu_seconds(parent.pid) == 0.0  # gone: nothing to read


def test_cpu_seconds_of_a_run_are_its_last_sample_less_its_first():
    assert _report().sampled.cpu_seconds == {"worker": 25.5, "broker": 5.0, "postgres": 12.0}
    assert math.isnan(bench_e2e.Sampled().cpu_seconds["broker"])  # never sampled


def test_the_report_prints_every_figure_and_strict_json():
    report = _report()
    text = bench_e2e.format_report(report)
    for needle in (
        "day 0 + days 1..5",
        "1,200,010",
        "0.10",
        "0.05",
        "generate",
        "sink",
        "peak memory",
        "0.500",
        "heap floor",
        "/heap",
        "CPU seconds during the run (31.0 s wall): worker 25.5, broker 5.0, PostgreSQL 12.0",
    ):
        assert needle in text
    assert [
        line.split()[:2] for line in text.splitlines() if line.startswith(("patients ", "admissions "))
    ] == [
        ["patients", "1,000,000"],
        ["admissions", "200,000"],
    ]
    summary = json.loads(bench_e2e.to_json(bench_e2e.summary(report)))
    assert [p["name"] for p in summary["phases"]] == ["day 0", "days 1..5", "day 0 + days 1..5"]
    assert summary["phases"][1]["end_to_end"]["rows_per_second"] == 20_000
    assert summary["phases"][1]["bare_copy"][SAME]["mb_per_second"] == 60
    assert summary["phases"][1]["bare_copy"][HEAP]["mb_per_second"] == 120
    assert summary["phases"][0]["bare_copy"][HEAP]["seconds_by_table"]["patients"] == 0.9
    assert summary["phases"][2]["ratio_end_to_end_over_heap_floor"] == pytest.approx(1.25 / 30.0)
    assert summary["cpu_seconds"] == {"wall": 31.0, "worker": 25.5, "broker": 5.0, "postgres": 12.0}
    assert summary["latency_run"]["send -> PostgreSQL"]["p99"] == 0.5


def test_the_latency_run_has_a_database_topics_and_group_of_its_own():
    """After a --full run the schedule is used up: the latency run starts again from day 0."""
    settings = Settings()
    fresh = bench_e2e.latency_run(settings)
    assert fresh.database_address == settings.database_address
    assert fresh.database_url.endswith("/hospital_latency") != settings.database_url.endswith(
        "/hospital_latency"
    )
    assert fresh.topic_prefix != settings.topic_prefix and fresh.app_id != settings.app_id
