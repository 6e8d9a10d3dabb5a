"""Properties of the simulated hospital, on a small hospital over a few simulated months."""

import collections
import datetime as dt
import gc
import itertools

import numpy as np
import pytest

from hospital_stream import sim
from hospital_stream.model import calendar, columns, reference
from hospital_stream.wire import copy_text

CONFIG = sim.HospitalConfig(seed=11, beds=100, population=150_000)


@pytest.fixture(scope="module")
def days() -> list[sim.DayRecords]:
    return list(sim.iter_days(CONFIG, 90))


def _materialised(records: sim.DayRecords) -> dict[str, list | bytes]:
    return {
        name: rows.copy_text() if isinstance(rows, columns.Columns) else list(rows[: len(rows)])
        for name, rows in records.tables.items()
    }


def test_same_seed_same_records(days):
    again = list(sim.iter_days(CONFIG, 5))
    for first, second in zip(days[:5], again, strict=True):
        assert _materialised(first) == _materialised(second)
        assert first.streamed == second.streamed


def test_other_seed_other_records(days):
    other = next(sim.iter_days(sim.HospitalConfig(seed=12, beds=100, population=150_000), 1))
    assert _materialised(other)["admissions"] != _materialised(days[0])["admissions"]


def test_resuming_from_a_checkpoint_continues_identically(days):
    checkpoint = sim.encode_checkpoint(days[39].state)
    resumed = list(sim.iter_days(CONFIG, 10, sim.decode_checkpoint(checkpoint)))
    assert [r.day for r in resumed] == list(range(40, 50))
    for original, again in zip(days[40:50], resumed, strict=True):
        assert _materialised(original) == _materialised(again)


def test_a_checkpoint_round_trips_exactly_past_32_bit_ids(days):
    state = sim.decode_checkpoint(sim.encode_checkpoint(days[20].state))
    late = sim.make_id(3_000, 1)  # day 3,000: an admission id past 2**31
    state.inpatients[late] = sim.Inpatient(late, 7, 1, 3_000 * 1440, [[3_001 * 1440, 0]], True, "HOME")
    blob = sim.encode_checkpoint(state)
    again = sim.decode_checkpoint(blob)
    assert again == state and sim.encode_checkpoint(again) == blob
    assert sim.decode_checkpoint(sim.encode_checkpoint(days[20].state)) == days[20].state


def test_simulating_a_day_does_not_change_the_callers_state(days):
    state = sim.decode_checkpoint(sim.encode_checkpoint(days[10].state))
    before = sim.encode_checkpoint(state)
    sim.Hospital(CONFIG).simulate_day(state, 11)
    assert sim.encode_checkpoint(state) == before


def test_no_ward_ever_above_its_beds_or_below_zero(days):
    beds = {w.ward_id: w.beds for w in CONFIG.wards}
    occupied = collections.Counter()
    for records in days:
        for row in sorted(records.tables["transfers"], key=lambda r: r[0]):
            _, _, _, _, from_ward, to_ward, _, _ = row
            if from_ward is not None:
                occupied[from_ward] -= 1
            if to_ward is not None:
                occupied[to_ward] += 1
            assert 0 <= occupied[to_ward or from_ward] <= beds[to_ward or from_ward]
        assert dict(occupied) == dict(records.state.occupancy().items()) | {
            k: 0 for k in occupied if k not in records.state.occupancy()
        }


def test_occupancy_emerges_near_real_figures(days):
    """Not pinned anywhere: demand, stays and beds produce it (realism.md: 85-88%)."""
    occupancy = [sum(r.state.occupancy().values()) / CONFIG.beds for r in days[30:]]
    assert 0.70 <= float(np.mean(occupancy)) <= 0.95
    assert max(occupancy) <= 1.0


def test_staff_retire_on_their_65th_birthday_and_are_replaced():
    config = sim.HospitalConfig(seed=3, beds=400, population=600_000)
    retirements = hires = 0
    for records in sim.iter_days(config, 200):
        today = records.date
        retired_ids = {row[0] for row in records.tables["staff_retirements"]}
        for member in records.state.staff.values():
            assert calendar.birthday(dt.date.fromordinal(member.birth_date), 65) > today
        new_staff = [row for row in records.tables["staff"] if row[6] == today.isoformat()]
        if records.day > 0:
            assert len(new_staff) == len(retired_ids)
            hires += len(new_staff)
        retirements += len(retired_ids)
        for _staff_id, retired_on in records.tables["staff_retirements"]:
            assert retired_on == today.isoformat()
    assert retirements > 0 and retirements == hires


def test_staffing_per_ward_never_drops(days):
    first = collections.Counter((m.ward_id, m.role) for m in days[0].state.staff.values())
    for records in days:
        assert collections.Counter((m.ward_id, m.role) for m in records.state.staff.values()) == first


@pytest.fixture(scope="module")
def patients() -> sim.PopulationColumns:
    return sim.PopulationColumns(sim.Population(sim.HospitalConfig(seed=5, population=120_000)))


def test_population_ids_are_valid_unique_and_agree_with_birth_date_and_sex(patients):
    rows = patients.rows()
    assert len(rows) == 120_000 and [row[0] for row in rows] == list(range(1, 120_001))
    assert len({row[1] for row in rows}) == len(rows)
    for row in rows[::20]:
        assert sim.is_valid_national_id(row[1], dt.date.fromisoformat(row[5]), row[4])
    ages = np.array([(dt.date(2020, 1, 1) - dt.date.fromisoformat(r[5])).days / 365.25 for r in rows])
    assert 0.25 <= np.mean(ages < 15) <= 0.32  # a young pyramid, not uniform ages
    assert np.mean(ages >= 65) < 0.1
    assert 0.49 <= np.mean([row[4] == "F" for row in rows]) <= 0.53


def test_population_names_follow_the_pools_and_each_persons_sex(patients):
    rows = patients.rows(0, 60_000)
    pools = reference.name_pools()
    share = {pool.locale: np.mean([row[3] in set(pool.last) for row in rows]) for pool in pools}
    for pool in pools:
        assert abs(share[pool.locale] - pool.share) < 0.01 + 0.05 * pool.share, (pool.locale, share)
    female = {name for pool in pools for name in pool.first_female}
    male = {name for pool in pools for name in pool.first_male}
    assert all(row[2] in (female if row[4] == "F" else male) for row in rows)
    assert len({row[2] for row in rows}) > 500 and len({row[3] for row in rows}) > 2_000
    streets, cities = reference.address_pool().streets, set(reference.address_pool().cities)
    for _, _, first, last, _, _, address, city, postal_code, sim_day in rows[::50]:
        number, street = address.removesuffix(" Street").split(" ", 1)
        assert 1 <= int(number) <= 399 and street in streets and city in cities
        assert len(postal_code) == 4 and postal_code.isdigit() and sim_day == 0 and first and last


def test_population_is_deterministic_per_seed(patients):
    again = sim.PopulationColumns(sim.Population(sim.HospitalConfig(seed=5, population=120_000)))
    assert again.copy_text(95_000, 105_000) == patients.copy_text(95_000, 105_000)
    other = sim.PopulationColumns(sim.Population(sim.HospitalConfig(seed=6, population=120_000)))
    assert other.copy_text(0, 100) != patients.copy_text(0, 100)


def test_population_copy_text_is_the_rows_and_does_not_depend_on_slicing(patients):
    whole = patients.copy_text()
    chunks = [patients.copy_text(i, i + sim.CHUNK_ROWS) for i in range(0, len(patients), sim.CHUNK_ROWS)]
    assert b"".join(chunks) == whole and whole.count(b"\n") == len(patients)
    block = sim.POPULATION_BLOCK
    for start, stop in (
        (0, 5_000),
        (block - 7, block + 5),
        (2 * block, 2 * block + 5_000),
        (119_990, 120_000),
    ):
        text = patients.copy_text(start, stop)
        assert text == copy_text.encode_copy_rows(patients.rows(start, stop))
        assert text == b"".join(whole.splitlines(keepends=True)[start:stop])
        assert list(copy_text.decode_copy_rows(text)) == [
            [str(v) for v in row] for row in patients.rows(start, stop)
        ]
    assert patients.copy_text(7, 7) == b"" and patients.rows(len(patients), None) == []
    assert not any(byte in whole for byte in b"\\\r\0")
    assert all(line.count(b"\t") == 9 for line in whole.splitlines()[::97])


def test_population_is_the_day_zero_patients_table(days):
    patients = days[0].tables["patients"]
    assert isinstance(patients, columns.Columns) and patients.columns == sim.PATIENT_COLUMNS
    assert len(patients) == CONFIG.population and "patients" not in days[1].tables


def test_date_and_fixed_width_columns_render_like_python():
    dates = [dt.date(1, 1, 1), dt.date(999, 12, 31), dt.date(1900, 2, 28), dt.date(1969, 12, 31)]
    dates += [dt.date(1970, 1, 1), dt.date(2000, 2, 29), dt.date(9999, 12, 31)]
    numbers = np.array([0, 42, 501015009087, 9_999_999_999_999])
    table = columns.Columns(
        ("date", "id", "code"),
        (
            columns.Date(np.array([d.toordinal() for d in dates])),
            columns.Digits(np.resize(numbers, len(dates)), 13),
            columns.Digits(np.arange(len(dates)) * 1_111, 4),
        ),
    )
    assert table.rows()[:2] == [
        ("0001-01-01", "0000000000000", "0000"),
        ("0999-12-31", "0000000000042", "1111"),
    ]
    assert [row[0] for row in table.rows()] == [d.isoformat() for d in dates]
    assert table.copy_text() == copy_text.encode_copy_rows(table.rows())
    with pytest.raises(ValueError, match="digit"):
        columns.Digits(np.array([10_000]), 4)


def test_luhn_check_digit_of_a_known_number():
    # 8001015009087 is the classic valid example South African ID number.
    assert sim.is_valid_national_id("8001015009087", dt.date(1980, 1, 1), "M")
    assert not sim.is_valid_national_id("8001015009088")
    assert not sim.is_valid_national_id("8001015009087", dt.date(1980, 1, 1), "F")


def test_streamed_transfers_are_three_per_slot_in_event_time_order(days):
    for records in days:
        assert len(records.streamed) == sim.STREAM_SLOTS_PER_DAY
        flat = [row for slot in records.streamed for row in slot]
        assert all(len(slot) <= sim.TRANSFERS_PER_SLOT for slot in records.streamed)
        assert flat == sorted(flat, key=lambda r: (r[6], r[0]))
        assert set(flat) <= set(records.tables["transfers"])
        assert all(row[6] >= records.date.isoformat() for row in flat)  # live events of that day
    assert sum(len(s) for s in days[50].streamed) == 15


def test_admission_mix_and_stays_are_plausible(days):
    admissions = [row for r in days[1:] for row in r.tables["admissions"]]
    types = collections.Counter(row[4] for row in admissions)
    assert 0.45 <= types["EMERGENCY"] / len(admissions) <= 0.6
    transfers = sum(len(r.tables["transfers"]) for r in days[1:])
    assert 2.5 <= transfers / len(admissions) <= 5.0
    diagnoses = sum(len(r.tables["diagnoses"]) for r in days[1:])
    assert 9 <= diagnoses / len(admissions) <= 13  # MIMIC-IV: about 11 (realism.md)
    per_bed_year = len(admissions) / CONFIG.beds * 365 / 89
    assert 30 <= per_bed_year <= 80


def test_deaths_have_a_time_equal_to_discharge(days):
    for records in days:
        for _admission_id, discharged_at, location, died_at in records.tables["admission_discharges"]:
            assert (location == "DIED") == (died_at is not None)
            assert died_at is None or died_at == discharged_at


def test_clinical_records_belong_to_admissions_in_hospital(days):
    admitted: set[int] = set()
    for records in days[:20]:
        admitted |= {row[0] for row in records.tables["admissions"]}
        for table, key in (("lab_results", 1), ("vital_signs", 1), ("prescriptions", 1), ("procedures", 0)):
            assert {row[key] for row in records.tables[table].rows()} <= admitted, table


def test_clinical_rates_come_out_in_the_published_ranges(days):
    steady = days[30:]
    bed_days = sum(len(records.state.inpatients) for records in steady)
    labs = sum(len(records.tables["lab_results"]) for records in steady)
    admissions = sum(len(records.tables["admissions"]) for records in steady)
    prescriptions = sum(len(records.tables["prescriptions"]) for records in steady)
    assert 8.9 <= labs / bed_days <= 13.2  # lab tests per patient-day (realism.md)
    assert 25 <= prescriptions / admissions <= 45  # MIMIC-IV: about 36 per admission


def test_cancellations_reverse_the_admissions_last_event_the_same_day(days):
    """A11/A12/A13 at small rates, each undoing the event before it (realism.md, HL7 v2)."""
    events: dict[int, list[tuple]] = collections.defaultdict(list)
    cancelled_at, discharged, diagnosed = {}, set(), set()
    for records in days:
        for row in records.tables["transfers"]:
            events[row[1]].append(row)
        cancelled_at |= {row[0]: row[6] for row in records.tables["admissions"] if row[6] is not None}
        discharged |= {row[0] for row in records.tables["admission_discharges"]}
        diagnosed |= {row[0] for row in records.tables["diagnoses"].rows()}
    kinds = collections.Counter(row[3] for rows in events.values() for row in rows)
    cancellations = sum(kinds[f"cancel_{event}"] for event in ("admit", "transfer", "discharge"))
    assert all(kinds[f"cancel_{event}"] > 0 for event in ("admit", "transfer", "discharge")), kinds
    assert cancellations < 0.01 * kinds.total(), kinds
    for admission_id, rows in events.items():
        rows.sort(key=lambda r: (r[6], r[0]))
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # ids follow event time
        for before, row in itertools.pairwise(rows):
            if row[3].startswith("cancel_"):
                assert (before[3], before[4], before[5]) == (row[3].removeprefix("cancel_"), row[5], row[4])
                assert before[7] == row[7] and before[6] < row[6]
        if rows[-1][3] == "cancel_admit":
            assert len(rows) == 2 and cancelled_at[admission_id] == rows[-1][6]
            assert admission_id not in discharged and admission_id not in diagnosed
    assert len(cancelled_at) == kinds["cancel_admit"]


def test_a_full_size_hospital_moves_its_patients_about_as_often_as_mimic():
    """Emergency unit, ICU and moves between a service's wards (a ward per ~40 beds) give about
    MIMIC-IV's 4.4 transfer rows an admission (realism.md); 1,800 beds as by default. Moves
    that waited for a bed never bunch up: no patient passes through two wards in one minute."""
    admissions = transfers = 0
    moves_per_minute: collections.Counter[tuple[int, str]] = collections.Counter()
    for records in sim.iter_days(sim.HospitalConfig(seed=7, beds=1800, population=2_000_000), 15):
        if records.day >= 3:  # after day 0's inpatients, admitted before the start
            admissions += len(records.tables["admissions"])
            transfers += len(records.tables["transfers"])
        moves_per_minute.update((t[1], t[6]) for t in records.tables["transfers"] if t[3] == "transfer")
    assert 3.8 <= transfers / admissions <= 5.0
    assert max(moves_per_minute.values()) == 1


def test_the_collector_pauses_for_a_day_and_comes_back_only_as_it_was():
    assert gc.isenabled()
    with sim.collection_paused():
        with sim.collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with sim.collection_paused():
            pass
        assert not gc.isenabled()  # someone else's pause is left alone
    finally:
        gc.enable()
