"""The pure parts of benchmarks/bench_queries.py: arguments and the report."""

import pytest

from benchmarks import bench_queries


def test_arguments_default_to_every_complete_day_and_three_runs():
    args = bench_queries.parse_args([])
    assert (args.first, args.last, args.repeat, args.json) == (0, None, 3, None)


@pytest.mark.parametrize("argv", [["--from", "-1"], ["--from", "9", "--to", "3"], ["--repeat", "0"]])
def test_nonsense_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as exit_info:
        bench_queries.parse_args(argv)
    assert exit_info.value.code == 2


def test_the_report_shows_each_checks_slowest_window_and_each_panel():
    checks = {
        "days": [0, 863],
        "windows": 29,
        "window_days": 30,
        "seconds": 12.5,
        "checks": {
            "rows per day": {"seconds": 6.25, "slowest_window_seconds": 0.75, "ok": True},
            "ward capacity": {"seconds": 1.0, "slowest_window_seconds": 0.125, "ok": False},
        },
    }
    panels = {"charts: last 120 days, no cache": {"first_seconds": 0.25, "best_seconds": 0.0625}}
    text = bench_queries.format_report(5_100_000_000, [("lab_results", 20_000_000)], checks, panels)
    assert "database: 5.10 GB; largest tables (rows): lab_results 20,000,000" in text
    assert "days 0..863 in 29 windows of 30 days: 12.5 s" in text
    assert [line.split()[-3:] for line in text.splitlines() if line.startswith(("rows per", "ward cap"))] == [
        ["6.25", "0.750", "ok"],
        ["1.00", "0.125", "FAIL"],
    ]
    assert text.splitlines()[-1].split()[-2:] == ["0.250", "0.062"]
