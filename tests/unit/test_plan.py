from hospital_stream import sim
from hospital_stream.tools import plan

CONFIG = sim.HospitalConfig(seed=5, beds=80, population=20_000)


def test_a_plan_counts_day_zero_once_and_extrapolates_the_sampled_days():
    short, long = plan.estimate(CONFIG, 8, sample_days=7), plan.estimate(CONFIG, 108, sample_days=7)
    rows_short = {t.table: t.rows for t in short.tables}
    rows_long = {t.table: t.rows for t in long.tables}
    assert rows_short["patients"] == rows_long["patients"] == 20_000  # day 0 only
    assert rows_short["icd10_codes"] == rows_long["icd10_codes"]
    per_day = (rows_long["lab_results"] - rows_short["lab_results"]) / 100
    assert abs(per_day - rows_short["lab_results"] / 8) < rows_short["lab_results"] / 8  # same daily rate
    assert rows_long["ward_census"] == len(CONFIG.wards) * 108
    assert long.bytes > short.bytes > plan.CATALOG_BYTES


def test_a_plan_matches_what_the_simulator_produces_for_the_sampled_days():
    estimate = plan.estimate(CONFIG, 5, sample_days=4)
    produced: dict[str, int] = {}
    for records in sim.iter_days(CONFIG, 5):
        for table, n in plan._stored_rows(records.row_counts()).items():
            produced[table] = produced.get(table, 0) + n
    planned = {t.table: t.rows for t in estimate.tables}
    assert {table: planned[table] for table in produced} == produced
    assert estimate.to_json()["rows"] == estimate.rows
