"""The pure parts of benchmarks/bench_sim.py: arguments, generation timing and spooling, the report."""

import json
import math

import pytest

from benchmarks import bench_sim
from hospital_stream import sim
from hospital_stream.schema import TABLES

CONFIG = sim.HospitalConfig(seed=1, beds=60, population=12_000)


def test_arguments_default_to_30_days_and_the_environments_hospital():
    args = bench_sim.parse_args([])
    assert (args.days, args.beds, args.population, args.seed, args.keep) == (30, None, None, None, False)
    settings = bench_sim.hospital_settings(args, {"HOSPITAL_BEDS": "300", "HOSPITAL_SEED": "7"})
    assert (settings.beds, settings.seed, settings.population) == (300, 7, 5_000_000)


def test_arguments_override_the_environment():
    args = bench_sim.parse_args(["--days", "2", "--beds", "60", "--population", "12000", "--seed", "1"])
    settings = bench_sim.hospital_settings(args, {"HOSPITAL_BEDS": "300"})
    assert sim.HospitalConfig.from_settings(settings) == CONFIG
    assert args.days == 2


@pytest.mark.parametrize("argv", [["--days", "-1"], ["--beds", "0"], ["--population", "x"]])
def test_nonsense_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_sim.parse_args(argv)
    assert exit_info.value.code == 2


@pytest.fixture(scope="module")
def generation(tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    return spool, bench_sim.generate(CONFIG, 2, spool)


def test_generation_spools_exactly_the_simulated_rows(generation):
    spool, result = generation
    day0, steady = result.phases
    assert (day0.name, day0.first_day, day0.days) == ("day 0", 0, 1)
    assert (steady.name, steady.first_day, steady.days) == ("days 1..2", 1, 2)
    expected = [{}, {}]
    for records in sim.iter_days(CONFIG, 3):
        for table, count in records.row_counts().items():
            counts = expected[min(records.day, 1)]
            counts[table] = counts.get(table, 0) + count
    for phase, counts in zip(result.phases, expected, strict=True):
        assert {name: t.rows for name, t in phase.tables.items()} == counts
        assert phase.generation_seconds > 0
        for name, figures in phase.tables.items():
            path = bench_sim.spool_path(spool, phase, name)
            if not figures.rows:
                assert not path.exists() or path.stat().st_size == 0
                continue
            text = path.read_bytes()
            assert len(text) == figures.bytes
            assert text.count(b"\n") == figures.rows
            assert text.split(b"\n", 1)[0].count(b"\t") == len(TABLES[name].columns) - 1
    assert day0.tables["patients"].rows == CONFIG.population
    ledger = [
        json.loads(line.split(b"\t")[0]) for line in (spool / bench_sim.LEDGER).read_bytes().splitlines()
    ]
    closed = [h for h in ledger if h["kind"] == "day"]
    assert [h["day"] for h in closed] == [0, 1, 2]
    for header in closed:  # each day's close counts its chunks, and they add up to its rows
        chunks = [h for h in ledger if h["kind"] == "chunk" and h["day"] == header["day"]]
        assert header["chunks"] == len(chunks) == max(h["seq"] for h in chunks) + 1
        for table, rows in header["row_counts"].items():
            assert sum(h["rows"] for h in chunks if h["table"] == table) == rows, table
    assert result.construction_seconds > 0
    assert result.day0_state.next_day == 1


def _report(phases):
    return bench_sim.Report(
        seed=1,
        beds=60,
        population=12_000,
        days=2,
        start_date="2020-01-01",
        construction_seconds=0.5,
        phases=phases,
        database_bytes_after_day0=10 * bench_sim.MB,
        database_bytes=12 * bench_sim.MB,
        cpus=2,
        load_start="1.00 0.50 0.25",
        load_end="1.50 0.75 0.30",
    )


def _phase(name, first_day, days, rows, generation_seconds, copy_seconds):
    phase = bench_sim.Phase(
        name, first_day, days, simulate_seconds=generation_seconds, copy_seconds=copy_seconds
    )
    phase.tables["admissions"] = bench_sim.TableFigures(rows, rows * 100, copy_seconds / 2)
    phase.tables["admission_discharges"] = bench_sim.TableFigures(0, 0, 0.0)
    return phase


def test_ratios_compare_rows_per_second():
    report = _report([_phase("day 0", 0, 1, 1000, 1.0, 2.0), _phase("days 1..2", 1, 2, 600, 0.1, 0.3)])
    ratios = bench_sim.ratios(report)
    assert ratios["day 0"] == pytest.approx(2.0)
    assert ratios["days 1..2"] == pytest.approx(3.0)
    # overall: 1,600 rows in 0.5 + 1.1 s of generation against 2.3 s of COPY
    assert ratios["overall"] == pytest.approx(2.3 / 1.6)
    assert bench_sim.bytes_per_day(report) == pytest.approx(1 * bench_sim.MB)


def test_report_shows_both_rates_the_ratios_and_the_load():
    report = _report([_phase("day 0", 0, 1, 1000, 1.0, 2.0), _phase("days 1..2", 1, 2, 600, 0.1, 0.3)])
    text = bench_sim.format_report(report)
    assert "days 0..2 (2020-01-01..2020-01-03)" in text
    assert "1.00 0.50 0.25 at start, 1.50 0.75 0.30 at end" in text
    day0_lines = [line.split() for line in text.splitlines() if line.startswith("day 0 ")]
    # "day", "0", rows, MB, ..., rows/s, MB/s (generation), then the same for COPY, then apply s
    assert day0_lines[0][2:4] + day0_lines[0][-2:] == ["1,000", "0.10", "1,000", "0.10"]
    assert day0_lines[1][2:4] + day0_lines[1][-3:] == ["1,000", "0.10", "500", "0.05", "0.00"]
    ratio_lines = {line[:28].strip(): line[28:].strip() for line in text.splitlines() if line[28:].strip()}
    assert ratio_lines["day 0"] == "2.00" and ratio_lines["days 1..2"] == "3.00"
    assert "TEMP stage, then UPDATE admissions" in text
    assert "1.00 MB per simulated day" in text


def test_json_is_strict_and_holds_the_rates(tmp_path):
    report = _report([_phase("day 0", 0, 1, 1000, 1.0, 2.0), _phase("days 1..2", 1, 2, 600, 0.1, 0.3)])
    figures = json.loads(bench_sim.to_json(report))
    day0 = figures["phases"][0]
    assert day0["generation"]["rows_per_second"] == pytest.approx(1000)
    assert day0["copy"]["rows_per_second"] == pytest.approx(500)
    assert figures["ratio_generation_over_copy_rows_per_second"]["day 0"] == pytest.approx(2.0)
    # nothing timed for a table without rows: null, not NaN
    discharges = figures["phases"][1]["tables"]["admission_discharges"]
    assert discharges["copy_rows_per_second"] is None
    assert discharges["copy_into"].startswith("TEMP stage")
    assert math.isnan(bench_sim.rate(0, 0.0))
