"""`make bench` end to end on a tiny hospital: its own stack, both runs, the bare COPY, the report."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench_e2e

pytestmark = pytest.mark.integration

TINY = ["--days", "3", "--beds", "60", "--population", "12000", "--seed", "7"]


def test_the_benchmark_runs_the_pipeline_copies_its_rows_and_prints_every_figure(
    tmp_path, capsys, monkeypatch
):
    # At most one day in flight: days 2..3 then wait for day 1, so they are stored in a later
    # transaction than day 0 and the two phases have times of their own. With the default
    # backpressure a tiny hospital's days 0..3 can all land in one sink buffer, one transaction,
    # one completed_at, and the days 1..3 phase would measure 0 s.
    monkeypatch.setenv("HOSPITAL_MAX_UNSUNK_DAYS", "1")
    out = tmp_path / "bench.json"
    argv = [*TINY, "--latency-days", "1", "--latency-speed", "120", "--schema-at", "11", "--json", str(out)]
    assert bench_e2e.main(argv) == 0
    text = capsys.readouterr().out
    for needle in (
        "day 0 + days 1..3",
        "ratio",
        "/heap",
        "COPY seconds per table",
        "CPU seconds during the run",
        "generate",
        "produce",
        "route",
        "sink",
        "peak memory",
        "p99",
    ):
        assert needle in text
    summary = json.loads(out.read_text())
    day0, later, both = summary["phases"]
    assert day0["rows_by_table"]["patients"] == 12_000
    assert day0["rows_by_table"]["wards"] > 0 and later["rows_by_table"]["wards"] == 0
    assert later["rows_by_table"]["admissions"] > 0
    assert both["rows"] == day0["rows"] + later["rows"]
    # every stored row but the census (from the occupancy table) came from the generator
    assert summary["generated_rows"] >= both["rows"] - both["rows_by_table"]["ward_census"]
    targets = {bench_e2e.SAME_SCHEMA, bench_e2e.HEAP_FLOOR, "schema at 0011"}
    for phase in (day0, later, both):
        assert phase["end_to_end"]["seconds"] > 0 and set(phase["bare_copy"]) == targets
        for copy in phase["bare_copy"].values():
            assert copy["seconds"] > 0
            assert 0 < sum(copy["seconds_by_table"].values()) <= copy["seconds"]
        assert 0 < phase["ratio_end_to_end_over_copy"] < math.inf
        assert 0 < phase["ratio_end_to_end_over_heap_floor"] < math.inf
    assert set(day0["bare_copy"][bench_e2e.HEAP_FLOOR]["seconds_by_table"]) == {
        table for table, rows in day0["rows_by_table"].items() if rows
    }
    cpu = summary["cpu_seconds"]
    assert all(0 < cpu[name] < 2 * cpu["wall"] for name in ("worker", "broker", "postgres"))  # 2 cores
    stages = summary["stages"]
    assert stages["generate"]["messages"] == 4  # days 0..3, one encode each
    assert all(stages[s]["seconds"] > 0 for s in ("generate", "produce", "route", "sink"))
    memory = summary["peak_memory_bytes"]
    assert all(memory[k] > 10_000_000 for k in ("worker_rss", "broker_rss", "postgres_pss"))
    latency = summary["latency_run"]
    assert latency["send -> PostgreSQL"]["count"] > 0
    assert 0 < latency["send -> PostgreSQL"]["p50"] <= latency["send -> PostgreSQL"]["p99"] < 5
    assert latency["stream slot lateness"]["count"] >= 5  # the day's slots (the next may begin)
