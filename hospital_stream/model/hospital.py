"""The simulated state hospital: a pure, deterministic model.

``simulate_day(config, state, day) -> DayRecords`` is the whole interface: no I/O, no wall
clock. Every random draw comes from a generator seeded by ``(seed, day, purpose)``, so a day's
records depend only on the seed, the configuration and the state left by the day before; the
state round-trips exactly through :func:`encode_checkpoint`, which is how a restarted worker
carries on with no gap and no duplicate.

Time inside the model is whole minutes since the first simulated day's midnight (SAST).
Occupancy is not set anywhere: it emerges from arrivals (a catchment population's demand,
seasons, weekdays, COVID-19 waves) and lengths of stay, bounded by the beds of each ward.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import heapq
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from hospital_stream.model import clinical, columns, reference
from hospital_stream.model.calendar import MINUTES_PER_DAY, birthday, ts
from hospital_stream.model.config import (
    ADMISSION_LOCATIONS,
    ADMISSION_TYPES,
    ALLIED_SPECIALTIES,
    CANCEL_DELAY_MINUTES,
    CANCELLED_SHARE,
    COVID_WAVES,
    DISCHARGE_LOCATIONS,
    EMERGENCY_STAY_HOURS,
    EMERGENCY_UNIT,
    ICU,
    ICU_MEAN_STAY_DAYS,
    LOCKDOWN,
    MAX_WARD_MOVES,
    MIN_STEP_MINUTES,
    NURSE_SHIFTS,
    OBSERVATION_MAX_DAYS,
    RETIREMENT_AGE,
    ROTATION_RATE_PER_DAY,
    SAME_DAY_STAY_DAYS,
    SECONDARY_DIAGNOSES,
    SPECIALTIES,
    STAFF_PER_BED,
    STREAM_SLOTS_PER_DAY,
    SUPPORT_SPECIALTIES,
    TRANSFERS_PER_SLOT,
    WARD_MOVES_PER_DAY,
    HospitalConfig,
    Ward,
    day_rng,
)
from hospital_stream.model.population import Population, PopulationColumns
from hospital_stream.model.reference import icd10_codes, name_pools
from hospital_stream.model.state import (
    HospitalState,
    Inpatient,
    Presence,
    StaffMember,
    copy_inpatient,
    copy_state,
)
from hospital_stream.schema import DAY_ZERO_TABLES, TABLE_ORDER, TABLES

TRANSFERS = TABLES["transfers"]

# --- output --------------------------------------------------------------------------------------


@dataclasses.dataclass
class DayRecords:
    """One simulated day of hospital records, table by table, plus the live-stream selection."""

    day: int
    date: dt.date
    #: rows as tuples, or (the catchment and the bulk clinical tables) as NumPy columns
    tables: dict[str, Sequence[tuple[Any, ...]] | columns.Columns]
    #: the transfers streamed live, in event-time order, ``TRANSFERS_PER_SLOT`` per slot
    streamed: list[list[tuple[Any, ...]]]
    state: HospitalState

    def row_counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


_collection_lock = threading.Lock()
_collection_pauses = 0
_collection_was_enabled = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a day's work (threads may nest pauses).

    A day makes tens of thousands of small objects (rows, events, plans) that all live until it
    ends: the collector, triggered every 700 of them, would walk them again and again (about a
    tenth of a day's CPU time) and free nothing. Once the last pause ends, it runs as usual.
    """
    global _collection_pauses, _collection_was_enabled
    with _collection_lock:
        if _collection_pauses == 0:
            _collection_was_enabled = gc.isenabled()
            gc.disable()
        _collection_pauses += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collection_pauses -= 1
            if _collection_pauses == 0 and _collection_was_enabled:
                gc.enable()


def make_id(day: int, seq: int, width: int = 6) -> int:
    """Natural keys: the day a record was made, then its number that day."""
    return int(day * 10**width + seq)


# --- the model -----------------------------------------------------------------------------------

_SPECIALTY = {s.name: s for s in SPECIALTIES}


@functools.cache
def _mean_stay_days(specialty: str, admission_type: str) -> float:
    """The mean of a stay's log-normal length: the service's, shorter for observation (at most
    half of OBSERVATION_MAX_DAYS) and same-day surgery."""
    mean = _SPECIALTY[specialty].mean_stay_days
    if admission_type == "OBSERVATION":
        return min(OBSERVATION_MAX_DAYS / 2, mean * 0.35)
    if admission_type == "SURGICAL SAME DAY":
        return SAME_DAY_STAY_DAYS
    return mean


def _pick(choices: Sequence[tuple[str, float]], u: float) -> str:
    """The choice a uniform draw ``u`` falls on, by cumulative weight."""
    threshold = u * sum(weight for _, weight in choices)
    for name, weight in choices:
        threshold -= weight
        if threshold < 0:
            return name
    return choices[-1][0]


class _ArrivalDraws(NamedTuple):
    """What chance decides about one arrival, should it be admitted."""

    admission_location: str
    stay: int  # minutes
    icu: float  # uniform: below the ICU risk, the stay includes the ICU
    emergency_minutes: int  # time in the emergency unit before the ward
    icu_start: float  # share of the stay before the ICU
    icu_minutes: int
    moves: int  # moves between wards of the service (the first ``moves`` of the next two)
    move_at: list[float]  # sorted: where each move falls in the rest of the stay
    move_ward: list[float]  # uniform: which ward of the service each move goes to
    death: float  # uniform: below the death risk, the patient dies
    age: float
    discharge_location: str
    diagnoses: list[str]


class _CancelDraws:
    """Uniform draws for the day's ADT errors, drawn a block at a time: a NumPy call per event
    would cost more than the event."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self.rng, self.block = rng, block
        self.values: list[float] = []

    def __call__(self) -> float:
        if not self.values:
            self.values = self.rng.random(self.block).tolist()[::-1]
        return self.values.pop()


@dataclasses.dataclass(frozen=True)
class _Day:
    """What one day's arrivals share with its event loop: the loop's clock, ADT records, the
    errors it cancels later, its beds and its ids."""

    schedule: Callable[[int, str, Any], None]
    record: Callable[[int, int, str, int | None, int | None, int], None]
    entered_in_error: Callable[[str, int], int | None]
    free_ward: Callable[[str], Ward | None]
    next_id: Callable[..., int]
    occupancy: dict[int, int]


class Hospital:
    """Runs the model day by day; holds only derived, read-only helpers besides the config."""

    def __init__(self, config: HospitalConfig) -> None:
        self.config = config
        self.population = Population(config)
        codes = icd10_codes()
        self.codes = tuple(code.code for code in codes)
        self.code_index = {code: index for index, code in enumerate(self.codes)}
        self.codes_by_category: dict[str, list[str]] = {}
        for code in codes:
            self.codes_by_category.setdefault(code.category, []).append(code.code)

    # -- day 0: the hospital as it stands when digitisation starts --

    def initial_state(self) -> tuple[HospitalState, dict[str, list[tuple[Any, ...]]]]:
        """Staff of all ages on every ward and wards partly occupied on the first morning."""
        config, rng = self.config, day_rng(self.config, 0, 1)
        state = HospitalState()
        tables: dict[str, list[tuple[Any, ...]]] = {
            name: [] for name in ("staff", "staff_assignments", "admissions", "transfers", "diagnoses")
        }
        start = config.start_date
        for ward in config.wards:
            for role, per_bed in STAFF_PER_BED.items():
                for k in range(max(1, round(ward.beds * per_bed))):
                    age = float(np.clip(rng.normal(41, 11), 21, 64.95))
                    birth = start.toordinal() - int(age * 365.25)
                    hired = start.toordinal() - int(min(age - 21, rng.exponential(8)) * 365.25)
                    self._hire(
                        state,
                        tables,
                        rng,
                        0,
                        role,
                        self._staff_specialty(rng, role, ward),
                        birth,
                        hired,
                        ward.ward_id,
                        NURSE_SHIFTS[k % 2] if role == "nurse" else "day",
                    )
        # Inpatients already in bed: admitted during the days before the start.
        seq = 0
        for ward in config.wards:
            if ward.specialty in (EMERGENCY_UNIT, ICU):
                continue
            n = int(ward.beds * rng.uniform(0.70, 0.85))
            people = self.population.sample(rng, ward.specialty, n)
            services, types = [ward.specialty] * n, ["EMERGENCY"] * n
            stays = self._lengths_of_stay(rng, services, types).tolist()
            admitted_u, discharge_u = rng.random((2, n)).tolist()
            locations = self._discharge_locations(rng, n)
            ages = (start.toordinal() - self.population.birth_ordinal[people]) / 365.25
            diagnoses = self._diagnosis_codes(rng, services, ages, np.array(stays), start)
            for person, stay, u, v, location, codes in zip(
                people.tolist(), stays, admitted_u, discharge_u, locations, diagnoses, strict=True
            ):
                seq += 1
                admission_id = make_id(0, seq)
                admitted = -int(u * min(stay, 10 * MINUTES_PER_DAY))
                discharge = max(admitted + stay, 30 + int(v * MINUTES_PER_DAY))
                patient = Inpatient(
                    admission_id,
                    person + 1,
                    ward.ward_id,
                    admitted,
                    [[discharge, 0]],
                    False,
                    location,
                    0,
                    ward.specialty,
                    "EMERGENCY",
                )
                state.inpatients[admission_id] = patient
                tables["admissions"].append(
                    (
                        admission_id,
                        patient.patient_id,
                        ward.ward_id,
                        ts(admitted, start),
                        "EMERGENCY",
                        "EMERGENCY ROOM",
                        None,
                        0,
                    )
                )
                tables["transfers"].append(
                    (
                        make_id(0, seq, 7),
                        admission_id,
                        patient.patient_id,
                        "admit",
                        None,
                        ward.ward_id,
                        ts(admitted, start),
                        0,
                    )
                )
                tables["diagnoses"].extend((admission_id, k, code) for k, code in enumerate(codes, start=1))
        state.next_day = 0
        return state, tables

    def _staff_specialty(self, rng: np.random.Generator, role: str, ward: Ward) -> str:
        if role == "allied":
            return str(ALLIED_SPECIALTIES[rng.integers(len(ALLIED_SPECIALTIES))])
        if role == "support":
            return str(SUPPORT_SPECIALTIES[rng.integers(len(SUPPORT_SPECIALTIES))])
        return ward.specialty

    def _hire(
        self,
        state: HospitalState,
        tables: dict[str, list[tuple[Any, ...]]],
        rng: np.random.Generator,
        day: int,
        role: str,
        specialty: str,
        birth: int,
        hired: int,
        ward_id: int,
        shift: str,
    ) -> StaffMember:
        staff_id = make_id(day, len(tables["staff"]) + 1)
        assignment_id = make_id(day, len(tables["staff_assignments"]) + 1)
        pools = name_pools()
        pool = pools[int(rng.integers(len(pools)))]
        female = rng.random() < (0.8 if role == "nurse" else 0.5)
        firsts = pool.first_female if female else pool.first_male
        start = self.config.start_date
        starts_on = max(hired, start.toordinal() + day)
        member = StaffMember(staff_id, role, specialty, birth, ward_id, shift, assignment_id, starts_on)
        state.staff[staff_id] = member
        hired_on = dt.date.fromordinal(hired).isoformat()
        tables["staff"].append(
            (
                staff_id,
                role,
                specialty,
                firsts[int(rng.integers(len(firsts)))],
                pool.last[int(rng.integers(len(pool.last)))],
                dt.date.fromordinal(birth).isoformat(),
                hired_on,
                day,
            )
        )
        tables["staff_assignments"].append(
            (
                assignment_id,
                staff_id,
                ward_id,
                shift,
                dt.date.fromordinal(starts_on).isoformat(),
                day,
            )
        )
        return member

    # -- one ordinary day --

    def simulate_day(self, state: HospitalState, day: int) -> DayRecords:
        """Everything that happens on simulated ``day``, and the state it leaves."""
        if state.next_day != day:
            raise ValueError(f"state is for day {state.next_day}, not day {day}")
        with collection_paused():
            return self._simulate_day(state, day)

    def _simulate_day(self, state: HospitalState, day: int) -> DayRecords:
        config = self.config
        tables: dict[str, list[tuple[Any, ...]]] = {
            name: [] for name in TABLE_ORDER if name not in DAY_ZERO_TABLES
        }
        extra: dict[str, Sequence[tuple[Any, ...]] | columns.Columns] = {}
        if day == 0:
            state, initial = self.initial_state()
            for name, rows in initial.items():
                tables[name].extend(rows)
            extra["icd10_codes"] = [(c.code, c.description, c.category) for c in icd10_codes()]
            extra["lab_tests"] = reference.lab_test_rows()
            extra["medicines"] = reference.medicine_rows()
            extra["procedure_codes"] = reference.procedure_code_rows()
            extra["wards"] = [(w.ward_id, w.code, w.name, w.specialty, w.beds, 0) for w in config.wards]
            extra["patients"] = PopulationColumns(self.population)
        else:
            state = copy_state(state)
        self._staff_day(state, tables, day)
        present = self._patient_day(state, tables, day)
        clinical_tables = clinical.clinical_day(
            day_rng(config, day, 4), day, config.start_date, self._stays(day, present)
        )
        state.next_day = day + 1
        extra["diagnoses"] = self._diagnosis_columns(tables.pop("diagnoses"), day)
        ordered = {**extra, **tables, **clinical_tables}
        ordered_tables = {name: ordered[name] for name in TABLE_ORDER if name in ordered}
        return DayRecords(
            day, config.date_of(day), ordered_tables, self._select_streamed(tables["transfers"], day), state
        )

    def _diagnosis_columns(self, rows: list[tuple[Any, ...]], day: int) -> columns.Columns:
        """The day's diagnoses, the largest table the event loop writes, as columns."""
        admission, seq, code = (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
        return columns.Columns(
            TABLES["diagnoses"].columns,
            (
                columns.Int(np.array(admission, dtype=np.int64)),
                columns.Int(np.array(seq, dtype=np.int64)),
                columns.Text(np.array([self.code_index[c] for c in code], dtype=np.int64), self.codes),
                columns.Constant(day, len(rows)),
            ),
        )

    def _staff_day(self, state: HospitalState, tables: dict[str, list[tuple[Any, ...]]], day: int) -> None:
        """Retire everyone turning 65 today, hire a same-specialty replacement, rotate a few."""
        config, rng = self.config, day_rng(self.config, day, 2)
        today = config.date_of(day)
        yesterday = (today - dt.timedelta(days=1)).isoformat()
        # everyone born on the day 65 years back (give or take the leap days) whose 65th
        # birthday is today
        back = today.toordinal() - round(RETIREMENT_AGE * 365.25)
        retiring = {
            ordinal
            for ordinal in range(back - 3, back + 4)
            if birthday(dt.date.fromordinal(ordinal), RETIREMENT_AGE) == today
        }
        retirees = [member for member in state.staff.values() if member.birth_date in retiring]
        for member in sorted(retirees, key=lambda m: m.staff_id):
            del state.staff[member.staff_id]
            tables["staff_retirements"].append((member.staff_id, today.isoformat()))
            tables["staff_assignment_ends"].append((member.assignment_id, member.staff_id, yesterday))
            age = float(rng.uniform(22, 35))
            self._hire(
                state,
                tables,
                rng,
                day,
                member.role,
                member.specialty,
                today.toordinal() - int(age * 365.25),
                today.toordinal(),
                member.ward_id,
                member.shift,
            )
        # Rotations swap two people of the same role and specialty between wards, so every
        # ward keeps its staffing while the assignment history grows.
        candidates = sorted(state.staff.values(), key=lambda m: m.staff_id)
        movers = [
            m
            for m, u in zip(candidates, rng.random(len(candidates)).tolist(), strict=True)
            if u < ROTATION_RATE_PER_DAY and m.role in ("doctor", "nurse")
        ]
        colleagues: dict[tuple[str, str], list[StaffMember]] = {}
        for m in candidates:
            colleagues.setdefault((m.role, m.specialty), []).append(m)
        taken: set[int] = set()
        for mover in movers:
            if mover.staff_id in taken:
                continue
            partners = [
                m
                for m in colleagues[mover.role, mover.specialty]
                if m.ward_id != mover.ward_id and m.staff_id not in taken and m.staff_id != mover.staff_id
            ]
            if not partners:
                continue
            partner = partners[int(rng.integers(len(partners)))]
            taken.update((mover.staff_id, partner.staff_id))
            mover_ward, partner_ward = mover.ward_id, partner.ward_id
            for member, ward_id in ((mover, partner_ward), (partner, mover_ward)):
                tables["staff_assignment_ends"].append((member.assignment_id, member.staff_id, yesterday))
                member = state.staff[member.staff_id] = dataclasses.replace(
                    member,
                    assignment_id=make_id(day, len(tables["staff_assignments"]) + 1),
                    ward_id=ward_id,
                    since=today.toordinal(),
                )
                tables["staff_assignments"].append(
                    (
                        member.assignment_id,
                        member.staff_id,
                        ward_id,
                        member.shift,
                        today.isoformat(),
                        day,
                    )
                )

    def _patient_day(
        self, state: HospitalState, tables: dict[str, list[tuple[Any, ...]]], day: int
    ) -> dict[int, Presence]:
        """Arrivals, moves and discharges in event-time order, never above a ward's beds; returns
        who was in hospital during the day, by admission."""
        config = self.config
        rng, cancel_draw = day_rng(config, day, 3), _CancelDraws(day_rng(config, day, 5))
        start = config.start_date
        day_start, day_end = day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY
        # only an inpatient with a step due today changes today: it becomes a copy of its own
        due = [key for key, p in state.inpatients.items() if p.plan and p.plan[0][0] < day_end]
        for key in due:
            state.inpatients[key] = copy_inpatient(state.inpatients[key])
        present = {
            p.admission_id: Presence(p, p.ward_id, p.plan[-1][0] if p.plan else day_end, day_end)
            for p in state.inpatients.values()
        }
        occupancy = {w.ward_id: 0 for w in config.wards}
        occupancy.update(state.occupancy())
        # (minute, order, kind, payload): order keeps ties deterministic
        events: list[tuple[int, int, str, Any]] = []
        order = 0
        for key in sorted(due):  # inpatients are keyed by admission id
            order += 1
            events.append((max(state.inpatients[key].plan[0][0], day_start), order, "step", key))
        arrivals = self._arrivals(rng, day)
        draws = self._arrival_draws(rng, day, arrivals)
        for index, arrival in enumerate(arrivals):
            order += 1
            events.append((arrival[0], order, "arrive", index))
        heapq.heapify(events)
        counters = {
            "admission": len(tables["admissions"]),
            "transfer": len(tables["transfers"]),
            "request": 0,
        }

        def next_id(kind: str, width: int = 6) -> int:
            counters[kind] += 1
            return make_id(day, counters[kind], width)

        def free_ward(specialty: str) -> Ward | None:
            """The service's ward with most free beds (the first of equals), None if all are full."""
            best, most = None, 0
            for ward in config.wards_by_specialty[specialty]:
                free = ward.beds - occupancy[ward.ward_id]
                if free > most:
                    best, most = ward, free
            return best

        def schedule(minute: int, kind: str, payload: Any) -> None:
            nonlocal order
            order += 1
            heapq.heappush(events, (minute, order, kind, payload))

        def record(
            admission_id: int,
            patient_id: int,
            event: str,
            from_ward: int | None,
            to_ward: int | None,
            minute: int,
        ) -> None:
            tables["transfers"].append(
                (
                    next_id("transfer", 7),
                    admission_id,
                    patient_id,
                    event,
                    from_ward,
                    to_ward,
                    ts(minute, start),
                    day,
                )
            )

        def entered_in_error(event: str, minute: int) -> int | None:
            """When ``event`` at ``minute`` is cancelled as entered in error; None if it stands."""
            if cancel_draw() >= CANCELLED_SHARE[event]:
                return None
            low, high = CANCEL_DELAY_MINUTES
            cancelled = minute + low + int(cancel_draw() * (high - low))
            return cancelled if cancelled < day_end else None

        day_context = _Day(schedule, record, entered_in_error, free_ward, next_id, occupancy)
        while events:
            minute, _, kind, payload = heapq.heappop(events)
            if kind == "arrive":
                arrived = self._arrive(state, tables, arrivals[payload], draws[payload], day_context, day)
                if arrived is not None:
                    present[arrived.admission_id] = Presence(
                        arrived, arrived.ward_id, arrived.plan[-1][0], day_end
                    )
                continue
            if kind == "cancel":
                # A11/A12/A13 reverse the admission's last event; the bed the error held (the
                # admitting ward, the ward moved to) is free again, and the stay goes on
                event, admission_id, patient_id, from_ward, to_ward = payload
                record(admission_id, patient_id, f"cancel_{event}", from_ward, to_ward, minute)
                if from_ward is not None:
                    occupancy[from_ward] -= 1
                resumed = state.inpatients.get(admission_id)
                if resumed is not None and resumed.plan[0][0] < day_end:
                    schedule(resumed.plan[0][0], "step", admission_id)
                continue
            patient = state.inpatients[payload]
            ids = (patient.admission_id, patient.patient_id)
            _, target = patient.plan[0]
            if target == 0:  # discharge
                record(*ids, "discharge", patient.ward_id, None, minute)
                cancel = None if patient.dies else entered_in_error("discharge", minute)
                if cancel is not None:  # the patient never left, and leaves later
                    schedule(cancel, "cancel", ("discharge", *ids, None, patient.ward_id))
                    patient.plan[0][0] = cancel + 60 + int(cancel_draw() * 660)
                    present[patient.admission_id].planned_discharge = patient.plan[0][0]
                    continue
                occupancy[patient.ward_id] -= 1
                del state.inpatients[patient.admission_id]
                present[patient.admission_id].until = minute
                tables["admission_discharges"].append(
                    (
                        patient.admission_id,
                        ts(minute, start),
                        "DIED" if patient.dies else patient.discharge_location,
                        ts(minute, start) if patient.dies else None,
                    )
                )
                continue
            ward = config.ward_by_id[target]
            if ward.specialty != config.ward_by_id[patient.ward_id].specialty:
                # a move to another service takes the bed with most room in that service
                alternative = free_ward(ward.specialty)
                target = alternative.ward_id if alternative else target
            if occupancy[target] < config.ward_by_id[target].beds and target != patient.ward_id:
                record(*ids, "transfer", patient.ward_id, target, minute)
                occupancy[target] += 1
                cancel = entered_in_error("transfer", minute)
                if cancel is not None:  # the patient stays, and the move is entered again later
                    schedule(cancel, "cancel", ("transfer", *ids, target, patient.ward_id))
                    patient.plan[0][0] = cancel + 30 + int(cancel_draw() * 210)
                    continue
                occupancy[patient.ward_id] -= 1
                patient.ward_id = target
                patient.plan.pop(0)
            elif ward.specialty == ICU or patient.delays >= 3 or target == patient.ward_id:
                patient.plan.pop(0)  # no ICU bed: cared for where they are; or give up moving
            else:
                patient.delays += 1
                patient.plan[0][0] = minute + 240  # wait four hours for a bed
            # a step planned before a delayed move happens after it, never before or with it
            patient.plan[0][0] = max(patient.plan[0][0], minute + MIN_STEP_MINUTES)
            if patient.plan[0][0] < day_end:
                schedule(patient.plan[0][0], "step", patient.admission_id)
        return present

    def _stays(self, day: int, present: dict[int, Presence]) -> clinical.Stays:
        """The day's presences as the arrays the clinical records are drawn from."""
        entries = [present[key] for key in sorted(present)]
        ward_specialty = {w.ward_id: w.specialty for w in self.config.wards}
        patients = np.array([e.patient.patient_id for e in entries], dtype=np.int64)
        admitted = np.array([e.patient.admitted_at for e in entries], dtype=np.int64)
        today = self.config.start_date.toordinal() + day
        return clinical.Stays(
            admission_id=np.array([e.patient.admission_id for e in entries], dtype=np.int64),
            patient_id=patients,
            ward_id=np.array([e.ward_id for e in entries], dtype=np.int32),
            specialty=np.array([e.patient.service for e in entries], dtype="<U16"),
            in_icu=np.array([ward_specialty[e.ward_id] == ICU for e in entries], dtype=bool),
            age=(today - self.population.birth_ordinal[patients - 1]) / 365.25,
            sex=np.where(self.population.female[patients - 1], "F", "M").astype("<U1"),
            admitted_at=admitted,
            present_from=np.maximum(admitted, day * MINUTES_PER_DAY),
            present_until=np.array([e.until for e in entries], dtype=np.int64),
            planned_discharge=np.array([e.planned_discharge for e in entries], dtype=np.int64),
            admission_type=np.array([e.patient.admission_type for e in entries], dtype="<U20"),
        )

    def _arrivals(self, rng: np.random.Generator, day: int) -> list[tuple[int, str, str, int]]:
        """(minute, specialty, admission type, person index) of everyone asking for a bed today."""
        date = self.config.date_of(day)
        weekend = date.weekday() >= 5
        flu, covid = _flu_factor(date), _covid_factor(date)
        lockdown = LOCKDOWN[0] <= date <= LOCKDOWN[1]
        arrivals: list[tuple[int, str, str, int]] = []
        for specialty in SPECIALTIES:
            expected = self.config.daily_demand[specialty.name]
            if specialty.name in ("medicine", "paediatrics"):
                expected *= flu
            if specialty.name == "medicine":
                expected *= 1 + covid
            mix = np.array(specialty.type_mix)
            if weekend:
                mix[3:] = 0  # no elective lists at weekends
            if lockdown:
                mix[3:] *= 0.3
            elif date.year == 2020 and date > LOCKDOWN[1]:
                mix[3:] *= 0.75
            planned_share = mix.sum() / sum(specialty.type_mix)
            count = int(rng.poisson(expected * planned_share))
            types = rng.choice(len(ADMISSION_TYPES), size=count, p=mix / mix.sum())
            people = self.population.sample(rng, specialty.name, count)
            # planned lists start between 07:00 and 11:00; emergencies follow the hourly curve
            hours = np.minimum(np.searchsorted(_ARRIVAL_HOURS, rng.random(count), side="right"), 23)
            minutes = np.where(
                types >= 3, rng.integers(7 * 60, 11 * 60, count), hours * 60 + rng.integers(60, size=count)
            )
            arrivals.extend(
                zip(
                    (minutes + day * MINUTES_PER_DAY).tolist(),
                    itertools.repeat(specialty.name),
                    (ADMISSION_TYPES[t] for t in types.tolist()),
                    people.tolist(),
                )
            )
        arrivals.sort()
        return arrivals

    def _arrival_draws(
        self, rng: np.random.Generator, day: int, arrivals: list[tuple[int, str, str, int]]
    ) -> list[_ArrivalDraws]:
        """Every random number an arrival may need once admitted, drawn for the whole day at once
        (one NumPy call per quantity, not one per arrival)."""
        n = len(arrivals)
        if n == 0:
            return []
        _, specialties, types, people = zip(*arrivals, strict=True)
        persons = np.array(people, dtype=np.int64)
        ages = (self.config.start_date.toordinal() + day - self.population.birth_ordinal[persons]) / 365.25
        location_u = rng.random(n).tolist()
        locations = [_pick(ADMISSION_LOCATIONS[kind], u) for kind, u in zip(types, location_u, strict=True)]
        stay_minutes = self._lengths_of_stay(rng, specialties, types)
        stays = stay_minutes.tolist()
        emergency = (rng.uniform(*EMERGENCY_STAY_HOURS, n) * 60).astype(np.int64).tolist()
        icu_start = rng.uniform(0.05, 0.3, n).tolist()
        icu_minutes = (
            (rng.exponential(ICU_MEAN_STAY_DAYS - 0.5, n) * MINUTES_PER_DAY).astype(np.int64) + 720
        ).tolist()
        moves = np.minimum(rng.poisson(WARD_MOVES_PER_DAY * stay_minutes / MINUTES_PER_DAY), MAX_WARD_MOVES)
        move_at = np.sort(rng.random((n, MAX_WARD_MOVES)), axis=1).tolist()
        move_ward = rng.random((n, MAX_WARD_MOVES)).tolist()
        u = rng.random((3, n)).tolist()
        discharge = self._discharge_locations(rng, n)
        diagnoses = self._diagnosis_codes(rng, specialties, ages, stay_minutes, self.config.date_of(day))
        return [
            _ArrivalDraws(*fields)
            for fields in zip(
                locations,
                stays,
                u[0],
                emergency,
                icu_start,
                icu_minutes,
                moves.tolist(),
                move_at,
                move_ward,
                u[1],
                ages.tolist(),
                discharge,
                diagnoses,
                strict=True,
            )
        ]

    def _arrive(
        self,
        state: HospitalState,
        tables: dict[str, list[tuple[Any, ...]]],
        arrival: tuple[int, str, str, int],
        draws: _ArrivalDraws,
        today: _Day,
        day: int,
    ) -> Inpatient | None:
        """Ask for a bed; the new inpatient, or None when diverted, postponed or cancelled."""
        minute, specialty_name, admission_type, person = arrival
        config, start = self.config, self.config.start_date
        patient_id = person + 1
        via_emergency = admission_type in ("EMERGENCY", "URGENT", "OBSERVATION")
        ward = today.free_ward(EMERGENCY_UNIT) if via_emergency else None
        ward = ward or today.free_ward(specialty_name)
        requested = config.wards_by_specialty[EMERGENCY_UNIT if via_emergency else specialty_name][0]
        outcome = "admitted" if ward else ("diverted" if via_emergency else "postponed")
        tables["bed_requests"].append(
            (
                today.next_id("request"),
                patient_id,
                (ward or requested).ward_id,
                ts(minute, start),
                admission_type,
                outcome,
                day,
            )
        )
        if ward is None:
            return None
        admission_id = today.next_id("admission")
        today.occupancy[ward.ward_id] += 1
        today.record(admission_id, patient_id, "admit", None, ward.ward_id, minute)
        cancel = today.entered_in_error("admit", minute)
        tables["admissions"].append(
            (
                admission_id,
                patient_id,
                ward.ward_id,
                ts(minute, start),
                admission_type,
                draws.admission_location,
                None if cancel is None else ts(cancel, start),
                day,
            )
        )
        if cancel is not None:  # the bed stays taken until the admission is cancelled
            today.schedule(cancel, "cancel", ("admit", admission_id, patient_id, ward.ward_id, None))
            return None
        specialty = _SPECIALTY[specialty_name]
        stay = draws.stay
        plan: list[list[int]] = []
        icu_risk = specialty.icu_risk if admission_type in ("EMERGENCY", "URGENT") else specialty.icu_risk / 3
        icu = draws.icu < icu_risk
        cursor = minute
        if ward.specialty == EMERGENCY_UNIT and admission_type != "OBSERVATION":
            cursor += draws.emergency_minutes
            plan.append([cursor, config.wards_by_specialty[specialty_name][0].ward_id])
        if icu:
            cursor += int(draws.icu_start * stay)
            plan.append([cursor, config.wards_by_specialty[ICU][0].ward_id])
            cursor += draws.icu_minutes
            plan.append([cursor, config.wards_by_specialty[specialty_name][0].ward_id])
        same_service = config.wards_by_specialty[specialty_name]
        if len(same_service) > 1:
            rest = max(0, minute + stay - cursor)
            for at, which in itertools.islice(zip(draws.move_at, draws.move_ward, strict=True), draws.moves):
                plan.append([cursor + int(at * rest), same_service[int(which * len(same_service))].ward_id])
            cursor = plan[-1][0] if plan else cursor
        plan.append([max(cursor + 60, minute + stay), 0])
        death_risk = 0.01 + 0.0009 * max(0.0, draws.age - 30) + (0.15 if icu else 0.0)
        if specialty_name in ("maternity", "psychiatry"):
            death_risk /= 10
        patient = Inpatient(
            admission_id,
            patient_id,
            ward.ward_id,
            minute,
            plan,
            draws.death < death_risk,
            draws.discharge_location,
            0,
            specialty_name,
            admission_type,
        )
        state.inpatients[admission_id] = patient
        tables["diagnoses"].extend(
            (admission_id, seq, code) for seq, code in enumerate(draws.diagnoses, start=1)
        )
        if patient.plan[0][0] < (day + 1) * MINUTES_PER_DAY:
            today.schedule(patient.plan[0][0], "step", admission_id)
        return patient

    def _lengths_of_stay(
        self, rng: np.random.Generator, specialties: Sequence[str], types: Sequence[str]
    ) -> np.ndarray:
        """Minutes of each stay: log-normal around the service's mean (shorter for observation and
        same-day surgery), at least four hours."""
        mean = np.array([_mean_stay_days(name, kind) for name, kind in zip(specialties, types, strict=True)])
        sigma = 0.8
        days = np.exp(np.log(mean) - sigma**2 / 2 + sigma * rng.standard_normal(len(mean)))
        observation = np.array([kind == "OBSERVATION" for kind in types], dtype=bool)
        days = np.where(observation, np.minimum(days, OBSERVATION_MAX_DAYS), days)
        return np.maximum(240, (days * MINUTES_PER_DAY).astype(np.int64))

    def _discharge_locations(self, rng: np.random.Generator, n: int) -> list[str]:
        return [_pick(DISCHARGE_LOCATIONS, u) for u in rng.random(n).tolist()]

    @functools.cache  # noqa: B019 -- one Hospital per run, a handful of specialties
    def _secondary_codes(self, specialty: str) -> list[str]:
        return self.codes_by_category["comorbidity"] + self.codes_by_category[specialty]

    def _diagnosis_codes(
        self,
        rng: np.random.Generator,
        specialties: Sequence[str],
        ages: np.ndarray,
        stay_minutes: np.ndarray,
        date: dt.date,
    ) -> list[list[str]]:
        """Each admission's ICD-10 codes: a primary one of its service (respiratory in the flu
        season, COVID-19 in a wave), then distinct secondary ones, more for older patients and
        longer stays (more comorbidities, and more found and coded over a longer stay)."""
        n = len(specialties)
        flu, covid = (_flu_factor(date) - 1) * 2, _covid_factor(date) / (1 + _covid_factor(date))
        u = rng.random((3, n)).tolist()
        stay_days = np.asarray(stay_minutes) / MINUTES_PER_DAY
        counts = rng.poisson(SECONDARY_DIAGNOSES + np.maximum(ages, 0.0) / 8 + np.minimum(stay_days, 20) / 2)
        picks = rng.random(int(counts.sum())).tolist()
        ends = np.cumsum(counts).tolist()
        codes, first = [], 0
        for i, specialty in enumerate(specialties):
            pool = self.codes_by_category[specialty]
            if specialty in ("medicine", "paediatrics") and u[0][i] < flu:
                pool = self.codes_by_category["respiratory"]
            if specialty == "medicine" and u[1][i] < covid:
                pool = self.codes_by_category["covid"]
            secondary = self._secondary_codes(specialty)
            chosen = [pool[int(u[2][i] * len(pool))]]
            chosen += [secondary[int(v * len(secondary))] for v in picks[first : ends[i]]]
            codes.append(list(dict.fromkeys(chosen)))
            first = ends[i]
        return codes

    def _select_streamed(self, transfers: list[tuple[Any, ...]], day: int) -> list[list[tuple[Any, ...]]]:
        """Three transfers from each fifth of the day, spread evenly, in event-time order."""
        at, ident = TRANSFERS.position("transferred_at"), TRANSFERS.position("transfer_id")
        ordered = sorted(transfers, key=lambda row: (row[at], row[ident]))
        slots: list[list[tuple[Any, ...]]] = [[] for _ in range(STREAM_SLOTS_PER_DAY)]
        # the model's timestamps share one format and offset: as strings they sort by time
        slot_minutes = MINUTES_PER_DAY // STREAM_SLOTS_PER_DAY
        day_start = ts(day * MINUTES_PER_DAY, self.config.start_date)
        bounds = [ts(day * MINUTES_PER_DAY + k * slot_minutes, self.config.start_date) for k in range(1, 5)]
        for row in ordered:
            if row[at] < day_start:
                continue  # day 0's records of stays that began before the start are not live
            slots[bisect.bisect_right(bounds, row[at])].append(row)
        chosen = []
        for rows in slots:
            if len(rows) <= TRANSFERS_PER_SLOT:
                chosen.append(rows)
            else:
                picks = np.linspace(0, len(rows) - 1, TRANSFERS_PER_SLOT).round().astype(int)
                chosen.append([rows[i] for i in picks])
        return chosen


#: tables only day 0 fills: the reference data and the catchment population
#: emergency arrivals by hour: fewest around 04:00, most between 10:00 and 20:00
_ARRIVAL_HOURS = np.cumsum([3, 2, 2, 2, 2, 2, 3, 4, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 6, 5, 4, 3]) / 130


def _flu_factor(date: dt.date) -> float:
    """Southern-hemisphere influenza season: extra medical demand peaking in mid-June."""
    distance = min(abs(date.timetuple().tm_yday - 167), 365 - abs(date.timetuple().tm_yday - 167))
    return 1 + 0.22 * math.exp(-((distance / 40) ** 2))


def _covid_factor(date: dt.date) -> float:
    return sum(a * math.exp(-(((date - c).days / w) ** 2)) for c, w, a in COVID_WAVES)


def iter_days(config: HospitalConfig, days: int, state: HospitalState | None = None) -> Iterator[DayRecords]:
    """Simulate ``days`` days from ``state`` (default: the start)."""
    hospital = Hospital(config)
    state = state or HospitalState()
    for day in range(state.next_day, state.next_day + days):
        records = hospital.simulate_day(state, day)
        state = records.state
        yield records
