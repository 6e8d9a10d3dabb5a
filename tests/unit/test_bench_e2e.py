"""The pure parts of benchmarks/bench_e2e.py: arguments, reading /metrics, quantiles, the report."""

import json
import math

import pytest

from benchmarks import bench_e2e
from hospital_stream.metrics import Metrics
from hospital_stream.settings import Settings


def test_arguments_default_to_a_bounded_run_and_a_short_fast_clock_run():
    args = bench_e2e.parse_args([])
    assert (args.days, args.full, args.latency_days, args.latency_speed) == (200, False, 3, 60.0)
    assert bench_e2e.parse_args(["--full"]).full


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


def _report():
    day0 = bench_e2e.Phase("day 0", {"patients": 1_000_000, "wards": 10}, 100_000_000, 20.0, 2.0)
    later = bench_e2e.Phase("days 1..5", {"admissions": 200_000}, 30_000_000, 10.0, 0.5)
    return bench_e2e.Report(
        seed=1, beds=60, population=1_000_000, days=5, run_seconds=31.0, phases=[day0, later],
        stages={"generate": (3.0, 6.0), "sink": (25.0, 40.0)}, latency_days=1, latency_speed=60.0,
        latency={"send -> PostgreSQL": {"count": 15.0, "p50": 0.3, "p99": 0.5}},
    )  # fmt: skip


def test_ratios_are_per_phase_and_overall():
    (_day0, r0), (_later, r1), (both, r2) = bench_e2e.comparisons(_report())
    assert r0 == pytest.approx(0.1) and r1 == pytest.approx(0.05)
    assert both.total_rows == 1_200_010 and both.pipeline_seconds == 30.0 and both.copy_seconds == 2.5
    assert r2 == pytest.approx(2.5 / 30.0)


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
    ):
        assert needle in text
    summary = json.loads(bench_e2e.to_json(bench_e2e.summary(report)))
    assert [p["name"] for p in summary["phases"]] == ["day 0", "days 1..5", "day 0 + days 1..5"]
    assert summary["phases"][1]["end_to_end"]["rows_per_second"] == 20_000
    assert summary["phases"][1]["bare_copy"]["mb_per_second"] == 60
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
