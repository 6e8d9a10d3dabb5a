"""Properties of the clinical records generator, on a synthetic cohort of a few hundred stays."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import re
from pathlib import Path

import numpy as np
import pytest

from hospital_stream import sim
from hospital_stream.model import clinical, columns, reference
from hospital_stream.wire.copy_text import decode_copy_rows, encode_copy_rows
from tests.helpers import COHORT_DAYS, COHORT_START, MIX, Cohort, make_cohort

SQL = Path(__file__).resolve().parents[2] / "sql" / "0005_create_clinical_tables.sql"


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return make_cohort()


@dataclasses.dataclass
class Day:
    day: int
    stays: clinical.Stays
    tables: dict[str, columns.Columns]
    #: the tables' rows as Python values (the slow path), computed once
    rows: dict[str, list[tuple]]

    @functools.cached_property
    def index(self) -> dict[int, int]:
        return {a: i for i, a in enumerate(self.stays.admission_id.tolist())}


@pytest.fixture(scope="module")
def days(cohort: Cohort) -> list[Day]:
    out = []
    for day in range(COHORT_DAYS):
        stays = cohort.stays(day)
        tables = clinical.clinical_day(np.random.default_rng([42, day]), day, COHORT_START, stays)
        out.append(Day(day, stays, tables, {name: cols.rows() for name, cols in tables.items()}))
    return out


def table_rows(days: list[Day], table: str) -> list[tuple]:
    return [row for day in days for row in day.rows[table]]


@functools.cache
def minute(text: str) -> int:
    """An ISO timestamp as model minutes (and a check that it is in SAST)."""
    when = dt.datetime.fromisoformat(text)
    assert when.utcoffset() == dt.timedelta(hours=2), text
    start = dt.datetime(COHORT_START.year, COHORT_START.month, COHORT_START.day, tzinfo=when.tzinfo)
    return int((when - start).total_seconds()) // 60


def sql_columns() -> dict[str, list[str]]:
    tables = {}
    for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", SQL.read_text(), re.DOTALL):
        columns = [line.split()[0] for line in body.strip().splitlines()]
        tables[name] = [c for c in columns if c not in ("CHECK", "PRIMARY")]
    return tables


# --- the interface ------------------------------------------------------------------------------


def test_tables_and_columns_are_the_sql_tables(days):
    columns = sql_columns()
    tables = days[10].tables
    assert list(tables) == ["lab_results", "vital_signs", "prescriptions", "procedures"]
    for name, cols in tables.items():
        assert list(cols.columns) == columns[name]
        assert all(len(row) == len(cols.columns) for row in days[10].rows[name])
    assert len(reference.lab_test_rows()[0]) == len(columns["lab_tests"])
    assert len(reference.medicine_rows()[0]) == len(columns["medicines"])
    assert len(reference.procedure_code_rows()[0]) == len(columns["procedure_codes"])


def test_every_specialty_of_the_simulator_has_clinical_weights():
    assert set(clinical.SERVICES) == {s.name for s in sim.SPECIALTIES} == set(MIX)
    assert (*clinical.SERVICES, "icu") == reference.CLINICAL_SERVICES


def test_same_inputs_same_bytes_and_another_seed_differs(cohort):
    stays = cohort.stays(12)

    def text(seed: int) -> dict[str, bytes]:
        tables = clinical.clinical_day(np.random.default_rng(seed), 12, COHORT_START, stays)
        return {name: cols.copy_text() for name, cols in tables.items()}

    first = text(1)
    assert all(first.values())
    assert text(1) == first
    other = text(2)
    assert all(other[name] != first[name] for name in first)


def test_copy_text_slices_join_and_round_trip(days):
    for day in days[8:11]:
        for name, cols in day.tables.items():
            whole = cols.copy_text()
            assert whole.endswith(b"\n") and whole.count(b"\n") == len(cols)
            assert b"\\" not in whole and b"\r" not in whole
            for step in (5000, 777, 1):
                if step == 1 and len(cols) > 600:
                    continue
                parts = [cols.copy_text(i, i + step) for i in range(0, len(cols), step)]
                assert b"".join(parts) == whole
            assert cols.copy_text(3, 3) == b"" and cols.copy_text(len(cols), None) == b""
            assert cols.rows(5, 9) == day.rows[name][5:9]
            assert encode_copy_rows(day.rows[name]) == whole
            decoded = list(decode_copy_rows(whole))
            assert decoded == [[str(v) for v in row] for row in day.rows[name]]
            assert all(len(fields) == len(cols.columns) for fields in decoded)


def test_values_have_sensible_precision(days):
    for value in (row[5] for row in table_rows(days[20:22], "lab_results")):
        assert len(repr(value).split(".")[1]) <= 3
    for row in table_rows(days[20:22], "vital_signs"):
        assert len(repr(row[9]).split(".")[1]) == 1  # temperature is numeric(3, 1)
    for row in table_rows(days[20:22], "prescriptions"):
        assert len(repr(row[5]).split(".")[1]) <= 4


def test_empty_stays_give_empty_tables():
    empty = clinical.Stays(
        *tuple(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.int32, "<U16", bool, float, "<U1"))
        + tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
        + (np.zeros(0, dtype="<U20"),)
    )
    tables = clinical.clinical_day(np.random.default_rng(0), 3, COHORT_START, empty)
    assert [len(t) for t in tables.values()] == [0, 0, 0, 0]
    assert all(t.copy_text() == b"" and t.rows() == [] for t in tables.values())


def test_bad_stays_are_refused(cohort):
    stays = cohort.stays(5)
    with pytest.raises(ValueError, match="differ in length"):
        dataclasses.replace(stays, age=stays.age[:-1])
    with pytest.raises(ValueError, match="unknown specialty"):
        clinical.clinical_day(
            np.random.default_rng(0),
            5,
            COHORT_START,
            dataclasses.replace(stays, specialty=np.full(len(stays), "icu")),
        )


# --- keys ----------------------------------------------------------------------------------------


def test_ids_follow_the_natural_key_formula(days):
    for day in days:
        for name, width in (("lab_results", 8), ("vital_signs", 8), ("prescriptions", 7)):
            ids = [row[0] for row in day.rows[name]]
            assert ids == [day.day * 10**width + n for n in range(1, len(ids) + 1)]
        for rows in day.rows.values():
            assert {row[-1] for row in rows} <= {day.day}


def test_procedures_are_coded_once_with_contiguous_seq(days):
    coded_on: dict[int, int] = {}
    seqs: dict[int, list[int]] = collections.defaultdict(list)
    for day in days:
        admitted = day.stays.admitted_at
        first_day = (admitted // 1440 == day.day) | ((day.day == 0) & (admitted < 0))
        for admission, seq, _, _, _ in day.rows["procedures"]:
            assert first_day[day.index[admission]]
            assert coded_on.setdefault(admission, day.day) == day.day
            seqs[admission].append(seq)
    assert len(coded_on) > 500
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())


# --- values within the schema's checks and the reference data ------------------------------------


def test_every_code_is_in_the_reference_tables(days):
    tests = {row[0] for row in reference.lab_test_rows()}
    medicines = {row[0] for row in reference.medicine_rows()}
    procedures = {row[0] for row in reference.procedure_code_rows()}
    names = {m.name for m in reference.medicines()} | {m.brand for m in reference.medicines() if m.brand}
    labs = table_rows(days, "lab_results")
    prescriptions = table_rows(days, "prescriptions")
    assert {row[3] for row in labs} <= tests
    assert {row[3] for row in prescriptions} <= medicines
    assert {row[4] for row in prescriptions} <= names
    assert {row[2] for row in table_rows(days, "procedures")} <= procedures
    # and the catalogues get used, not a corner of them
    assert len({row[3] for row in prescriptions}) > 0.8 * len(medicines)
    assert len({row[3] for row in labs}) == len(tests)


def test_reference_codes_are_well_formed():
    def luhn(digits: str) -> int:  # LOINC's mod-10 check digit
        total = 0
        for i, char in enumerate(reversed(digits)):
            d = int(char) * (2 if i % 2 == 0 else 1)
            total += d // 10 + d % 10
        return (10 - total % 10) % 10

    for code, *_ in reference.lab_test_rows():
        body, check = code.split("-")
        assert luhn(body) == int(check), code
    for code, *_ in reference.medicine_rows():
        assert re.fullmatch(r"[A-Z]\d\d[A-Z]{2}(\d\d)?", code), code
    for code, *_ in reference.procedure_code_rows():
        assert re.fullmatch(r"[0-9A-HJ-NP-Z]{7}", code), code
    for rows in (reference.lab_test_rows(), reference.medicine_rows(), reference.procedure_code_rows()):
        assert len({row[0] for row in rows}) == len(rows)
        assert all(v and "\t" not in v for row in rows for v in row if isinstance(v, str))
    assert 30 <= len(reference.lab_test_rows()) <= 60
    assert 60 <= len(reference.medicine_rows()) <= 120
    assert 40 <= len(reference.procedure_code_rows()) <= 100
    assert all(low < high for *_, low, high in reference.lab_test_rows())


def test_lab_flags_agree_with_reference_and_critical_limits(days):
    tests = {t.code: t for t in reference.lab_tests()}
    flags = collections.Counter()
    for _, _, _, code, _, value, flag, _ in table_rows(days[5:25], "lab_results"):
        t = tests[code]
        low = -np.inf if t.crit_low is None else t.crit_low
        high = np.inf if t.crit_high is None else t.crit_high
        expected = (
            "LL"
            if value < low
            else "HH"
            if value > high
            else "L"
            if value < t.ref_low
            else "H"
            if value > t.ref_high
            else "N"
        )
        assert flag == expected, (code, value, flag)
        assert t.min_value <= value <= t.max_value
        flags[flag] += 1
    total = sum(flags.values())
    assert 0.65 < flags["N"] / total < 0.9
    assert flags["LL"] + flags["HH"] > 0 and (flags["LL"] + flags["HH"]) / total < 0.02


def test_vital_signs_within_the_schema_checks(days):
    rows = table_rows(days, "vital_signs")
    assert rows
    for _, _, _, _, _, heart, systolic, diastolic, breathing, temperature, spo2, _ in rows:
        assert 20 <= heart <= 250 and 40 <= systolic <= 260 and 20 <= diastolic <= 160
        assert diastolic < systolic
        assert 4 <= breathing <= 60 and 32 <= temperature <= 43 and 50 <= spo2 <= 100
    # plausible centres
    assert 70 < np.median([r[5] for r in rows]) < 95
    assert 110 < np.median([r[6] for r in rows]) < 140
    assert 36.3 < np.median([r[9] for r in rows]) < 37.3


def test_prescriptions_have_doses_and_stop_after_they_start(days):
    for day in days:
        planned = day.stays.planned_discharge
        for _, admission, _, _, _, dose, unit, route, frequency, starts, stops, _ in day.rows[
            "prescriptions"
        ]:
            assert dose > 0 and unit and route and frequency
            start, stop = minute(starts), minute(stops)
            assert stop >= start + 60
            assert stop <= max(planned[day.index[admission]], start + 60)
            if frequency == "STAT":
                assert stop == start + 60


def test_children_get_smaller_doses(days):
    adult, child = [], []
    for day in days:
        for row in day.rows["prescriptions"]:
            if row[3] == "N02BE01" and row[6] == "mg":  # paracetamol
                (child if day.stays.age[day.index[row[1]]] < 13 else adult).append(row[5])
    assert np.median(child) < np.median(adult) == 1000


# --- times ---------------------------------------------------------------------------------------


def test_charted_times_fall_inside_the_presence_intervals(days):
    for day in days:
        lo, hi, admitted = day.stays.present_from, day.stays.present_until, day.stays.admitted_at
        for table in ("lab_results", "vital_signs"):
            for row in day.rows[table]:
                i = day.index[row[1]]
                assert lo[i] <= minute(row[4]) < hi[i], (table, row)
        for row in day.rows["prescriptions"]:
            i = day.index[row[1]]
            assert min(admitted[i], lo[i]) <= minute(row[9]) < hi[i]
        for row in day.rows["procedures"]:
            i = day.index[row[0]]
            assert admitted[i] <= minute(row[3]) < hi[i]
            if day.day > 0:
                assert lo[i] <= minute(row[3])


def test_labs_cluster_on_the_morning_round(days):
    hours = collections.Counter(minute(row[4]) % 1440 // 60 for row in table_rows(days[10:20], "lab_results"))
    total = sum(hours.values())
    assert (hours[5] + hours[6]) / total > 0.3
    assert (hours[1] + hours[2]) / total < 0.05


# --- rates against docs/realism.md ------------------------------------------------------------------


def presence_days(stays: clinical.Stays, mask: np.ndarray | None = None) -> float:
    span = (stays.present_until - stays.present_from) / 1440
    return float(span[mask].sum() if mask is not None else span.sum())


def test_lab_tests_per_patient_day(days):
    labs = sum(len(day.tables["lab_results"]) for day in days[10:])
    patient_days = sum(presence_days(day.stays) for day in days[10:])
    assert 8.9 <= labs / patient_days <= 13.2  # Valencia et al.: non-teaching to major teaching


def test_lab_tests_peak_on_the_first_day(days):
    first = collections.defaultdict(list)
    later = [0.0, 0.0]
    for day in days[10:]:
        stays = day.stays
        per = collections.Counter(row[1] for row in day.rows["lab_results"])
        dos = day.day - stays.admitted_at // 1440
        for i, admission in enumerate(stays.admission_id.tolist()):
            if dos[i] == 0 and not stays.in_icu[i]:
                surgical = stays.specialty[i] in ("surgery", "orthopaedics")
                first["surgical" if surgical else stays.specialty[i]].append(per[admission])
            elif dos[i] >= 4 and not stays.in_icu[i] and stays.specialty[i] != "psychiatry":
                later[0] += per[admission]
                later[1] += (stays.present_until[i] - stays.present_from[i]) / 1440
    medical, surgical = np.mean(first["medicine"]), np.mean(first["surgical"])
    assert 8 <= medical <= 14  # 10.8 on day 1 of a medical stay
    assert 15 <= surgical <= 23  # 18.2 of a surgical one
    assert 5 <= later[0] / later[1] <= 9.5  # falling to about 6 later


def test_icu_patients_get_more_labs_and_hourly_observations(days):
    labs, vitals, present = np.zeros(2), np.zeros(2), np.zeros(2)
    for day in days[10:]:
        icu = day.stays.in_icu.astype(int)
        for row in day.rows["lab_results"]:
            labs[icu[day.index[row[1]]]] += 1
        for row in day.rows["vital_signs"]:
            vitals[icu[day.index[row[1]]]] += 1
        for k in (0, 1):
            present[k] += presence_days(day.stays, icu == k)
    assert present[1] > 20
    assert labs[1] / present[1] > 2.5 * labs[0] / present[0]
    assert 20 <= vitals[1] / present[1] <= 27  # hourly
    assert 3.5 <= vitals[0] / present[0] <= 6.5  # every four to six hours


def test_prescriptions_and_procedures_per_admission(cohort, days):
    counts = {"prescriptions": collections.Counter(), "procedures": collections.Counter()}
    for day in days:
        counts["prescriptions"].update(row[1] for row in day.rows["prescriptions"])
        counts["procedures"].update(row[0] for row in day.rows["procedures"])
    # admissions whose whole stay lies inside the simulated days
    whole = (cohort.admitted_at >= 1440) & (cohort.discharge < (COHORT_DAYS - 1) * 1440)
    ids = cohort.admission_id[whole].tolist()
    prescriptions = np.array([counts["prescriptions"][a] for a in ids])
    assert 30 <= prescriptions.mean() <= 42  # about 36 in MIMIC-IV
    procedures = np.array([counts["procedures"][a] for a in ids])
    specialty = cohort.specialty[whole]
    surgical = np.isin(specialty, ("surgery", "orthopaedics", "maternity"))
    assert 1.2 <= procedures[surgical].mean() <= 2.5
    assert (procedures[surgical] >= 1).mean() > 0.85
    assert procedures[specialty == "medicine"].mean() < 1.0
    assert procedures[specialty == "psychiatry"].mean() < procedures[specialty == "medicine"].mean()


def test_maternity_admissions_deliver_once(days):
    deliveries = {"10E0XZZ", "10D00Z1", "10D00Z0", "10D07Z6", "10D17ZZ"}
    per = collections.defaultdict(list)
    for admission, _, code, _, _ in table_rows(days, "procedures"):
        per[admission].append(code)
    caesareans = vaginal = 0
    for codes in per.values():
        assert sum(c in deliveries for c in codes) <= 1
        if "10D00Z1" in codes:
            caesareans += 1
            assert not {"0HQ9XZZ", "0KQM0ZZ", "0W8NXZZ"} & set(codes)  # no perineal repair
        vaginal += "10E0XZZ" in codes
    assert 0.2 < caesareans / (caesareans + vaginal) < 0.45


# --- the illness model ----------------------------------------------------------------------------


def test_results_are_abnormal_more_often_when_sicker(days):
    abnormal = collections.defaultdict(lambda: [0, 0])
    for day in days[10:]:
        stays = day.stays
        dos = day.day - stays.admitted_at // 1440
        for row in day.rows["lab_results"]:
            i = day.index[row[1]]
            groups = [
                "icu" if stays.in_icu[i] else "ward",
                "old" if stays.age[i] >= 70 else "young" if 18 <= stays.age[i] < 40 else "",
                "early" if dos[i] <= 1 else "late" if dos[i] >= 6 else "",
            ]
            for group in filter(None, groups):
                abnormal[group][0] += row[6] != "N"
                abnormal[group][1] += 1
    share = {group: a / n for group, (a, n) in abnormal.items()}
    assert share["icu"] > share["ward"] + 0.05
    assert share["old"] > share["young"] + 0.03
    assert share["early"] > share["late"] + 0.02


def test_a_patients_results_persist_from_day_to_day(days):
    # an admission's haemoglobin today predicts tomorrow's
    by_day: dict[int, dict[int, float]] = collections.defaultdict(dict)
    for day in days[10:30]:
        for row in day.rows["lab_results"]:
            if row[3] == "718-7":
                by_day[day.day][row[1]] = row[5]
    pairs = [(by_day[d][a], by_day[d + 1][a]) for d in range(10, 29) for a in by_day[d] if a in by_day[d + 1]]
    assert len(pairs) > 100
    assert np.corrcoef(np.array(pairs).T)[0, 1] > 0.5


def test_fever_tachycardia_and_low_saturation_in_the_icu(days):
    groups: dict[int, list[tuple]] = {0: [], 1: []}
    for day in days[10:]:
        for row in day.rows["vital_signs"]:
            groups[int(day.stays.in_icu[day.index[row[1]]])].append((row[5], row[9], row[10]))
    ward, icu = np.array(groups[0]), np.array(groups[1])

    def rates(v: np.ndarray) -> np.ndarray:
        return np.array([(v[:, 0] > 100).mean(), (v[:, 1] >= 38).mean(), (v[:, 2] < 92).mean()])

    assert (rates(icu) > 1.5 * rates(ward)).all()
