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
import json
import math
import operator
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from hospital_stream import clinical, reference
from hospital_stream.models import TABLES, HospitalContext
from hospital_stream.reference import address_pool, icd10_codes, name_pools

SAST = dt.timezone(dt.timedelta(hours=2), "SAST")
MINUTES_PER_DAY = 1440
RETIREMENT_AGE = 65
STREAM_SLOTS_PER_DAY = 5
TRANSFERS_PER_SLOT = 3
CHUNK_ROWS = 5000
#: people drawn and rendered together (see PopulationColumns); a multiple of CHUNK_ROWS, so no
#: chunk of the patients table straddles two blocks. Changing it changes the people drawn.
POPULATION_BLOCK = 50_000
#: the patients table's columns, in COPY order
PATIENT_COLUMNS = TABLES["patients"].columns


# --- configuration -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Specialty:
    """A clinical service: how the catchment uses it and how long patients stay."""

    name: str
    ward_name: str
    code: str
    #: admissions per 1,000 catchment people per year (before the hospital's market share)
    rate_per_1000: float
    mean_stay_days: float
    icu_risk: float
    #: probabilities of EMERGENCY, URGENT, OBSERVATION, ELECTIVE, SURGICAL SAME DAY
    type_mix: tuple[float, float, float, float, float]


ADMISSION_TYPES = ("EMERGENCY", "URGENT", "OBSERVATION", "ELECTIVE", "SURGICAL SAME DAY")
SPECIALTIES = (
    Specialty("medicine", "Medical Ward", "MED", 22.0, 6.5, 0.06, (0.66, 0.16, 0.14, 0.04, 0.0)),
    Specialty("surgery", "Surgical Ward", "SURG", 12.0, 5.0, 0.10, (0.40, 0.15, 0.08, 0.25, 0.12)),
    Specialty("orthopaedics", "Orthopaedic Ward", "ORTH", 6.0, 7.0, 0.04, (0.50, 0.18, 0.04, 0.20, 0.08)),
    Specialty("paediatrics", "Paediatric Ward", "PAED", 8.0, 4.0, 0.04, (0.58, 0.16, 0.18, 0.06, 0.02)),
    Specialty("maternity", "Maternity Ward", "MATY", 14.0, 2.5, 0.01, (0.45, 0.30, 0.12, 0.13, 0.0)),
    Specialty("psychiatry", "Psychiatric Ward", "PSY", 2.5, 18.0, 0.0, (0.45, 0.35, 0.05, 0.15, 0.0)),
    Specialty("oncology", "Oncology Ward", "ONC", 3.5, 7.0, 0.05, (0.30, 0.25, 0.05, 0.35, 0.05)),
    Specialty("cardiology", "Cardiology Ward", "CARD", 5.0, 5.0, 0.12, (0.60, 0.20, 0.12, 0.08, 0.0)),
)
EMERGENCY_UNIT = "emergency"
ICU = "icu"
ICU_MEAN_STAY_DAYS = 3.0
EMERGENCY_STAY_HOURS = (2, 10)
OBSERVATION_MAX_DAYS = 2.0
SAME_DAY_STAY_DAYS = 0.6
BEDS_PER_WARD = 40
#: secondary diagnoses of a young patient's short stay, before those of age (one per 8 years)
#: and of length of stay (one per 2 days): MIMIC-IV codes about 11 diagnoses an admission
SECONDARY_DIAGNOSES = 3.0
#: moves between wards of the same service a day of stay (bed moves, step-down, outliers
#: brought back to their service): with the emergency unit and the ICU, MIMIC-IV records about
#: 4.4 transfer rows an admission
WARD_MOVES_PER_DAY = 0.55
#: the most such moves one stay plans
MAX_WARD_MOVES = 4
#: the average share of beds in use a hospital is sized for (NHS planning: about 85%)
PLANNING_OCCUPANCY = 0.85

#: staff per bed of a ward, by role (doctors, nurses, allied health, support)
STAFF_PER_BED = {"doctor": 0.22, "nurse": 1.05, "allied": 0.12, "support": 0.35}
ALLIED_SPECIALTIES = ("physiotherapy", "pharmacy", "radiography", "dietetics", "social work")
SUPPORT_SPECIALTIES = ("porter", "cleaner", "ward clerk", "catering")
NURSE_SHIFTS = ("day", "night")
ROTATION_RATE_PER_DAY = 1 / 365

#: HL7 ADT cancellations: the share of admits (A01), transfers (A02) and discharges (A03) that are
#: entered in error and cancelled (A11, A12, A13) later the same day. No public source counts
#: them; these are assumptions, each well under 1% of its events: an admission passes
#: registration checks before its A01, while transfers and discharges are entered on the ward
#: (a patient discharged in place of a bed neighbour, a move booked before the bed was ready).
CANCELLED_SHARE = {"admit": 0.002, "transfer": 0.006, "discharge": 0.004}
#: minutes between an event entered in error and its cancellation
CANCEL_DELAY_MINUTES = (10, 180)
#: the least time between two steps of one stay: steps overdue after a delayed move follow it,
#: never in the same minute (a patient does not pass through three wards at once)
MIN_STEP_MINUTES = 30

DISCHARGE_LOCATIONS = (
    ("HOME", 0.60),
    ("HOME HEALTH CARE", 0.17),
    ("SKILLED NURSING FACILITY", 0.06),
    ("REHAB", 0.05),
    ("TRANSFER TO OTHER HOSPITAL", 0.06),
    ("AGAINST ADVICE", 0.03),
    ("CHRONIC/LONG TERM ACUTE CARE", 0.03),
)
ADMISSION_LOCATIONS = {
    "EMERGENCY": (("EMERGENCY ROOM", 0.80), ("AMBULANCE", 0.15), ("TRANSFER FROM HOSPITAL", 0.05)),
    "URGENT": (("PHYSICIAN REFERRAL", 0.55), ("TRANSFER FROM HOSPITAL", 0.30), ("CLINIC REFERRAL", 0.15)),
    "OBSERVATION": (("EMERGENCY ROOM", 0.85), ("WALK-IN/SELF REFERRAL", 0.15)),
    "ELECTIVE": (("PHYSICIAN REFERRAL", 0.70), ("CLINIC REFERRAL", 0.30)),
    "SURGICAL SAME DAY": (("PHYSICIAN REFERRAL", 1.0),),
}

#: South Africa's population by five-year age band (0-4 ... 80+), mid-2020, shares.
AGE_PYRAMID = np.array(
    [
        0.098,
        0.097,
        0.091,
        0.082,
        0.083,
        0.094,
        0.091,
        0.079,
        0.064,
        0.053,
        0.045,
        0.039,
        0.032,
        0.025,
        0.018,
        0.011,
        0.011,
    ]
)
#: (centre date, width in days, extra share of medical demand) of South Africa's COVID-19 waves
COVID_WAVES = (
    (dt.date(2020, 7, 12), 24, 0.40),
    (dt.date(2021, 1, 10), 20, 0.45),
    (dt.date(2021, 7, 5), 22, 0.55),
    (dt.date(2021, 12, 15), 14, 0.25),
    (dt.date(2022, 5, 20), 18, 0.10),
)
LOCKDOWN = (dt.date(2020, 3, 27), dt.date(2020, 8, 31))


@dataclasses.dataclass(frozen=True)
class Ward:
    ward_id: int
    code: str
    name: str
    specialty: str
    beds: int


@dataclasses.dataclass(frozen=True)
class HospitalConfig:
    """The hospital and its catchment; everything the model needs besides the state."""

    seed: int = 2020
    start_date: dt.date = dt.date(2020, 1, 1)
    beds: int = 1800
    population: int = 5_000_000
    #: the share of the catchment's admissions that come to this hospital; None: the share its
    #: beds are planned for (see :attr:`share`), the rest going to the catchment's other hospitals
    market_share: float | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> HospitalConfig:
        return cls(
            seed=settings.seed,
            start_date=settings.start_date,
            beds=settings.beds,
            population=settings.population,
        )

    def date_of(self, day: int) -> dt.date:
        return self.start_date + dt.timedelta(days=day)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "start_date": self.start_date.isoformat(),
            "beds": self.beds,
            "population": self.population,
            "market_share": round(self.share, 6),
        }

    @functools.cached_property
    def share(self) -> float:
        """The share of the catchment's admissions that come here: given, or the share the beds
        were planned for, PLANNING_OCCUPANCY of them busy on an average day of the year (a
        hospital is sized for its share of the catchment; seasons and waves then push it above
        and below that, and a full ward diverts)."""
        if self.market_share is not None:
            return self.market_share
        whole_catchment = sum(self._bed_days(self._demand(1.0)).values())
        return min(1.0, PLANNING_OCCUPANCY * self.beds / whole_catchment)

    @functools.cached_property
    def daily_demand(self) -> dict[str, float]:
        """Expected admissions a day per specialty, before seasons and waves."""
        return self._demand(self.share)

    def _demand(self, share: float) -> dict[str, float]:
        return {s.name: self.population * s.rate_per_1000 / 1000 * share / 365 for s in SPECIALTIES}

    @staticmethod
    def _bed_days(demand: dict[str, float]) -> dict[str, float]:
        """Bed-days a day each service, the emergency unit and the ICU need for ``demand``,
        following how :meth:`Hospital._arrive` places and keeps each admission type."""
        emergency_days = sum(EMERGENCY_STAY_HOURS) / 2 / 24
        bed_days = {EMERGENCY_UNIT: 0.0, ICU: 0.0}
        for s in SPECIALTIES:
            emergency, urgent, observation, elective, same_day = (
                demand[s.name] * share / sum(s.type_mix) for share in s.type_mix
            )
            observed = min(OBSERVATION_MAX_DAYS / 2, s.mean_stay_days * 0.35)
            bed_days[EMERGENCY_UNIT] += (emergency + urgent) * emergency_days + observation * observed
            bed_days[s.name] = (emergency + urgent) * max(0.0, s.mean_stay_days - emergency_days) + (
                elective * s.mean_stay_days + same_day * SAME_DAY_STAY_DAYS
            )
            bed_days[ICU] += (
                (emergency + urgent + (elective + same_day) / 3) * s.icu_risk * ICU_MEAN_STAY_DAYS
            )
        return bed_days

    @functools.cached_property
    def wards(self) -> tuple[Ward, ...]:
        """Beds planned in proportion to the bed-days each service is expected to need."""
        bed_days = self._bed_days(self.daily_demand)
        total = sum(bed_days.values())
        names = {s.name: (s.ward_name, s.code) for s in SPECIALTIES}
        names[EMERGENCY_UNIT] = ("Emergency Unit", "EMER")
        names[ICU] = ("Intensive Care Unit", "ICU")
        wards: list[Ward] = []
        for specialty in (EMERGENCY_UNIT, ICU, *(s.name for s in SPECIALTIES)):
            beds = max(4, round(self.beds * bed_days[specialty] / total))
            count = max(1, round(beds / BEDS_PER_WARD))
            for index in range(count):
                ward_beds = beds // count + (1 if index < beds % count else 0)
                name, code = names[specialty]
                suffix = f" {index + 1}" if count > 1 else ""
                wards.append(
                    Ward(
                        len(wards) + 1,
                        f"{code}-{index + 1:02d}" if count > 1 else code,
                        name + suffix,
                        specialty,
                        ward_beds,
                    )
                )
        return tuple(wards)

    def context(self, schedule_days: int) -> HospitalContext:
        """What live messages about this hospital must agree with."""
        return HospitalContext(
            frozenset(w.ward_id for w in self.wards), self.population, self.start_date, schedule_days
        )

    @functools.cached_property
    def wards_by_specialty(self) -> dict[str, tuple[Ward, ...]]:
        grouped: dict[str, list[Ward]] = {}
        for ward in self.wards:
            grouped.setdefault(ward.specialty, []).append(ward)
        return {k: tuple(v) for k, v in grouped.items()}

    @functools.cached_property
    def ward_by_id(self) -> dict[int, Ward]:
        return {w.ward_id: w for w in self.wards}


# --- state ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Inpatient:
    """A patient in a bed, with the rest of the stay planned as (minute, ward or 0 = discharge)."""

    admission_id: int
    patient_id: int
    ward_id: int
    admitted_at: int
    plan: list[list[int]]
    dies: bool
    discharge_location: str
    delays: int = 0
    #: the admitting service (a SPECIALTIES name) and the admission type
    service: str = "medicine"
    admission_type: str = "EMERGENCY"

    @property
    def steps(self) -> int:
        """The steps left in the plan."""
        return len(self.plan)


@dataclasses.dataclass(frozen=True)
class StaffMember:
    """A staff member and their current assignment; a move makes a new value, so consecutive
    days' states share every member who did not move."""

    staff_id: int
    role: str
    specialty: str
    birth_date: int  # proleptic ordinal
    ward_id: int
    shift: str
    assignment_id: int
    since: int  # proleptic ordinal of the assignment's first day

    @functools.cached_property
    def checkpoint_row(self) -> tuple[int, ...]:
        """The member in the checkpoint, strings as their numbers (kept: most members stay
        the same for years, and the checkpoint is written every day)."""
        word = _CHECKPOINT_WORDS
        return (
            self.staff_id,
            word[self.role],
            word[self.specialty],
            self.birth_date,
            self.ward_id,
            word[self.shift],
            self.assignment_id,
            self.since,
        )


@dataclasses.dataclass
class Presence:
    """An admission's time in hospital during one day: its ward when the day (or the stay)
    began, the planned end of the stay, and when it left (the day's end if it stayed)."""

    patient: Inpatient
    ward_id: int
    planned_discharge: int
    until: int


@dataclasses.dataclass
class HospitalState:
    """What one simulated day leaves for the next."""

    next_day: int = 0
    inpatients: dict[int, Inpatient] = dataclasses.field(default_factory=dict)
    staff: dict[int, StaffMember] = dataclasses.field(default_factory=dict)

    def occupancy(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for patient in self.inpatients.values():
            counts[patient.ward_id] = counts.get(patient.ward_id, 0) + 1
        return counts


def copy_state(state: HospitalState) -> HospitalState:
    """A copy that simulating a day may change without changing ``state``. Inpatients and staff
    are shared: a day replaces an inpatient with a step due by a copy before changing it (see
    :meth:`Hospital._patient_day`), and a staff member who moves by a new value."""
    return HospitalState(next_day=state.next_day, inpatients=dict(state.inpatients), staff=dict(state.staff))


def _copy_inpatient(p: Inpatient) -> Inpatient:
    return Inpatient(
        p.admission_id,
        p.patient_id,
        p.ward_id,
        p.admitted_at,
        [[minute, ward] for minute, ward in p.plan],
        p.dies,
        p.discharge_location,
        p.delays,
        p.service,
        p.admission_type,
    )


#: every string a state holds, numbered for the checkpoint
_CHECKPOINT_WORDS = {
    word: index
    for index, word in enumerate(
        dict.fromkeys(
            (
                *STAFF_PER_BED,
                EMERGENCY_UNIT,
                ICU,
                *(s.name for s in SPECIALTIES),
                *ALLIED_SPECIALTIES,
                *SUPPORT_SPECIALTIES,
                *NURSE_SHIFTS,
                *ADMISSION_TYPES,
                *(name for name, _ in DISCHARGE_LOCATIONS),
            )
        )
    )
}
#: the checkpoint's first bytes: a compact binary encoding (before it, zlib-compressed JSON)
CHECKPOINT_MAGIC = b"HSC2"
#: the Inpatient's fields, with the plan's length in place of the plan (its steps follow apart)
_INPATIENT_ATTRIBUTES = (
    "admission_id",
    "patient_id",
    "ward_id",
    "admitted_at",
    "dies",
    "discharge_location",
    "delays",
    "service",
    "admission_type",
    "steps",
)
_INPATIENT_FIELDS = len(_INPATIENT_ATTRIBUTES)
_STAFF_FIELDS = len(dataclasses.fields(StaffMember))


def encode_checkpoint(state: HospitalState) -> bytes:
    """The state, exact and safe to load: a JSON header (the day, the strings, the shapes and
    types), then three little-endian integer arrays (inpatients, their plans' steps, staff),
    zlib-compressed. Equal states give equal bytes."""
    word = _CHECKPOINT_WORDS
    inpatients = list(state.inpatients.values())
    arrays = [
        _int_rows(inpatients, _INPATIENT_ATTRIBUTES, word),
        _flat((step for p in inpatients for step in p.plan), 2),
        _flat((member.checkpoint_row for member in state.staff.values()), _STAFF_FIELDS),
    ]
    # int32 where every value fits (ids and minutes do for years): half the bytes to compress
    arrays = [a.astype("<i4") if not a.size or -(2**31) <= a.min() <= a.max() < 2**31 else a for a in arrays]
    header = json.dumps(
        {
            "next_day": state.next_day,
            "words": list(word),
            "rows": [len(a) for a in arrays],
            "types": [a.dtype.str for a in arrays],
        },
        separators=(",", ":"),
    ).encode()
    body = len(header).to_bytes(4, "little") + header + b"".join(a.tobytes() for a in arrays)
    return CHECKPOINT_MAGIC + zlib.compress(body, 1)


def _int_rows(objects: list[Any], attributes: tuple[str, ...], word: dict[str, int]) -> np.ndarray:
    """The attributes of ``objects`` as rows of int64, strings as their numbers in ``word``."""
    out = np.empty((len(objects), len(attributes)), dtype="<i8")
    for j, attribute in enumerate(attributes):
        values = map(operator.attrgetter(attribute), objects)
        if objects and isinstance(getattr(objects[0], attribute), str):
            values = map(word.__getitem__, values)
        out[:, j] = np.fromiter(values, dtype="<i8", count=len(objects))
    return out


def _flat(rows: Iterable[Iterable[int]], width: int) -> np.ndarray:
    """Rows of ``width`` integers as an int64 array (np.fromiter: no per-row conversion)."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype="<i8").reshape(-1, width)


def decode_checkpoint(blob: bytes) -> HospitalState:
    if not blob.startswith(CHECKPOINT_MAGIC):
        return _state_from_json(json.loads(zlib.decompress(blob)))  # a checkpoint of an older version
    body = zlib.decompress(blob[len(CHECKPOINT_MAGIC) :])
    size = int.from_bytes(body[:4], "little")
    header = json.loads(body[4 : 4 + size])
    words, offset, arrays = header["words"], 4 + size, []
    widths = (_INPATIENT_FIELDS, 2, _STAFF_FIELDS)
    for rows, width, dtype in zip(header["rows"], widths, header["types"], strict=True):
        array = np.frombuffer(body, dtype=dtype, count=rows * width, offset=offset).reshape(rows, width)
        arrays.append(array)
        offset += array.nbytes
    patients, steps, staff = (a.tolist() for a in arrays)
    inpatients, first = {}, 0
    for admission, patient, ward, admitted, dies, location, delays, service, kind, length in patients:
        plan, first = steps[first : first + length], first + length
        inpatients[admission] = Inpatient(
            admission,
            patient,
            ward,
            admitted,
            plan,
            bool(dies),
            words[location],
            delays,
            words[service],
            words[kind],
        )
    members = {
        s[0]: StaffMember(s[0], words[s[1]], words[s[2]], s[3], s[4], words[s[5]], s[6], s[7]) for s in staff
    }
    return HospitalState(next_day=header["next_day"], inpatients=inpatients, staff=members)


def _state_from_json(obj: dict[str, Any]) -> HospitalState:
    inpatients = [Inpatient(*fields) for fields in obj["inpatients"]]
    staff = [StaffMember(*fields) for fields in obj["staff"]]
    return HospitalState(
        next_day=obj["next_day"],
        inpatients={p.admission_id: p for p in inpatients},
        staff={s.staff_id: s for s in staff},
    )


# --- output --------------------------------------------------------------------------------------


@dataclasses.dataclass
class DayRecords:
    """One simulated day of hospital records, table by table, plus the live-stream selection."""

    day: int
    date: dt.date
    #: rows as tuples, or (the catchment and the bulk clinical tables) as NumPy columns
    tables: dict[str, Sequence[tuple[Any, ...]] | clinical.Columns]
    #: the transfers streamed live, in event-time order, ``TRANSFERS_PER_SLOT`` per slot
    streamed: list[list[tuple[Any, ...]]]
    state: HospitalState

    def row_counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


def ts(minute: int, start: dt.date) -> str:
    """A model minute as an ISO timestamp in SAST (``2020-01-01T08:05:00+02:00``)."""
    day, minute_of_day = divmod(int(minute), MINUTES_PER_DAY)
    return _iso_date(start, day) + _TIME_OF_DAY[minute_of_day]


#: every minute of a day as "THH:MM:00+02:00"
_TIME_OF_DAY = tuple(f"T{m // 60:02d}:{m % 60:02d}:00+02:00" for m in range(MINUTES_PER_DAY))


@functools.lru_cache(maxsize=4096)
def _iso_date(start: dt.date, day: int) -> str:
    return (start + dt.timedelta(days=day)).isoformat()


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
    return day * 10**width + seq


def _rng(config: HospitalConfig, day: int, *purpose: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, day, *purpose])


# --- the catchment population -----------------------------------------------------------------


class Population:
    """The catchment: birth dates and sexes for everyone, drawn once from the age pyramid."""

    def __init__(self, config: HospitalConfig) -> None:
        self.config = config
        rng = _rng(config, 0, 101)
        n = config.population
        band = rng.choice(len(AGE_PYRAMID), size=n, p=AGE_PYRAMID / AGE_PYRAMID.sum())
        age_days = (band * 5 + rng.random(n) * np.where(band == len(AGE_PYRAMID) - 1, 15, 5)) * 365.25
        start_ordinal = config.start_date.toordinal()
        self.birth_ordinal = (start_ordinal - age_days).astype(np.int64)
        self.female = rng.random(n) < 0.51
        self.age_years = age_days / 365.25
        self.id_sequence = _unique_sequence_numbers(self.birth_ordinal, self.female, rng)
        self._eligibility: dict[str, np.ndarray] = {}

    def sample(self, rng: np.random.Generator, specialty: str, k: int) -> np.ndarray:
        """Indices of ``k`` people likely to be admitted to ``specialty``."""
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        cumulative = self._eligibility.get(specialty)
        if cumulative is None:
            cumulative = np.cumsum(self._weights(specialty))
            self._eligibility[specialty] = cumulative
        return np.searchsorted(cumulative, rng.random(k) * cumulative[-1], side="right")

    def _weights(self, specialty: str) -> np.ndarray:
        age, female = self.age_years, self.female
        adult = age >= 13
        if specialty == "paediatrics":
            return np.where(age < 13, np.where(age < 1, 6.0, 1.0), 0.0)
        if specialty == "maternity":
            return np.where(female & (age >= 16) & (age < 45), np.exp(-(((age - 28) / 7) ** 2)), 0.0)
        if specialty == "psychiatry":
            return np.where((age >= 16) & (age < 70), 1.0, 0.0)
        if specialty == "orthopaedics":
            return np.where(
                adult, 1.0 + np.exp((age - 60) / 12) + np.where(~female & (age < 40), 1.0, 0.0), 0.0
            )
        return np.where(adult, np.exp((age - 40) / 18), 0.0)

    def block_columns(self, block: int) -> clinical.Columns:
        """The patients rows of block ``block`` of ``POPULATION_BLOCK`` people (index + 1 is the
        patient id), as columns of integers and indices into vocabularies."""
        # One generator per fixed block of people: a person's row never depends on how the
        # caller slices the table.
        rng = _rng(self.config, 0, 102, block)
        start = block * POPULATION_BLOCK
        stop = min(start + POPULATION_BLOCK, len(self.female))
        n = stop - start
        male = (~self.female[start:stop]).astype(np.int64)
        births = self.birth_ordinal[start:stop]
        names = _person_names()
        u = rng.random((3, n))
        pool = np.searchsorted(names.cumulative_share, u[0] * names.cumulative_share[-1], side="right")
        first = names.first_start[pool, male] + (u[1] * names.first_count[pool, male]).astype(np.int64)
        last = names.last_start[pool] + (u[2] * names.last_count[pool]).astype(np.int64)
        addresses = _street_addresses()
        cities = address_pool().cities
        street = rng.integers(0, len(addresses), n)
        city = rng.integers(0, len(cities), n)
        postcode = rng.integers(1, 9999, n)
        citizen = rng.random(n) < 0.93
        data = (
            clinical._Int(np.arange(start + 1, stop + 1)),
            clinical._Digits(national_ids(births, self.id_sequence[start:stop], citizen), 13),
            clinical._Text(first, names.first),
            clinical._Text(last, names.last),
            clinical._Text(male, ("F", "M")),
            clinical._Date(births),
            clinical._Text(street, addresses),
            clinical._Text(city, cities),
            clinical._Digits(postcode, 4),
            clinical._Constant(0, n),
        )
        return clinical.Columns(PATIENT_COLUMNS, data)


@dataclasses.dataclass(frozen=True)
class _PersonNames:
    """Every name pool's first and last names in two vocabularies, and where each pool's
    lists lie in them."""

    cumulative_share: np.ndarray  # [pool]
    first: tuple[str, ...]
    first_start: np.ndarray  # [pool, 0 female / 1 male]
    first_count: np.ndarray  # [pool, 0 female / 1 male]
    last: tuple[str, ...]
    last_start: np.ndarray  # [pool]
    last_count: np.ndarray  # [pool]


@functools.cache
def _person_names() -> _PersonNames:
    pools = name_pools()
    firsts = [names for pool in pools for names in (pool.first_female, pool.first_male)]
    first_count = np.array([len(names) for names in firsts], dtype=np.int64)
    last_count = np.array([len(pool.last) for pool in pools], dtype=np.int64)
    return _PersonNames(
        cumulative_share=np.cumsum([pool.share for pool in pools]),
        first=tuple(name for names in firsts for name in names),
        first_start=(np.cumsum(first_count) - first_count).reshape(len(pools), 2),
        first_count=first_count.reshape(len(pools), 2),
        last=tuple(name for pool in pools for name in pool.last),
        last_start=np.cumsum(last_count) - last_count,
        last_count=last_count,
    )


@functools.cache
def _street_addresses() -> tuple[str, ...]:
    """Every street address a person may have: house numbers 1-399 on each street of the pool."""
    return tuple(f"{number} {street} Street" for number in range(1, 400) for street in address_pool().streets)


class PopulationColumns(clinical.Columns):
    """The patients table, drawn and rendered one block of people at a time, so day 0 holds
    neither the catchment's rows nor its COPY text (only the block last asked for)."""

    def __init__(self, population: Population) -> None:
        # Columns.__init__ takes the data of a whole table; here each block makes its own
        self.columns = PATIENT_COLUMNS
        self.population = population
        self._block: tuple[int, clinical.Columns] | None = None

    def __len__(self) -> int:
        return len(self.population.female)

    def __repr__(self) -> str:
        return f"<PopulationColumns {', '.join(self.columns)}: {len(self)} rows>"

    def copy_text(self, start: int = 0, stop: int | None = None) -> bytes:
        """Rows ``[start, stop)`` as COPY text, each line ending in a newline."""
        return b"".join(columns.copy_text(first, last) for columns, first, last in self._pieces(start, stop))

    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]:
        """Rows ``[start, stop)`` as tuples of Python values (dates as ISO strings)."""
        return [
            row for columns, first, last in self._pieces(start, stop) for row in columns.rows(first, last)
        ]

    def _pieces(self, start: int, stop: int | None) -> Iterator[tuple[clinical.Columns, int, int]]:
        """The blocks that rows ``[start, stop)`` span, each with the span's rows in it."""
        start, stop, _ = slice(start, stop).indices(len(self))
        if stop <= start:
            return
        for block in range(start // POPULATION_BLOCK, (stop - 1) // POPULATION_BLOCK + 1):
            offset = block * POPULATION_BLOCK
            yield self._columns(block), max(start - offset, 0), min(stop - offset, POPULATION_BLOCK)

    def _columns(self, block: int) -> clinical.Columns:
        if self._block is None or self._block[0] != block:
            self._block = (block, self.population.block_columns(block))
        return self._block[1]


#: the Luhn sum of four digits that start at an even position (the second and fourth doubled)
_LUHN_FOUR = np.array(
    [
        a + 2 * b - 9 * (b >= 5) + c + 2 * d - 9 * (d >= 5)
        for a, b, c, d in itertools.product(range(10), repeat=4)
    ]
)


def luhn_check_digit(digits: np.ndarray) -> np.ndarray:
    """Luhn check digits for rows of 12 digits (the South African ID number's last digit)."""
    doubled = digits[:, 1::2] * 2
    total = digits[:, 0::2].sum(axis=1) + (doubled // 10 + doubled % 10).sum(axis=1)
    return (10 - total % 10) % 10


def _yymmdd(birth_ordinal: np.ndarray) -> np.ndarray:
    """The YYMMDD of proleptic ordinals, as integers."""
    year, month, day = clinical.calendar_days(birth_ordinal)
    return (year % 100) * 10000 + month * 100 + day


def _unique_sequence_numbers(
    birth_ordinal: np.ndarray, female: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The SSSS digits of each ID number: 0000-4999 for women, 5000-9999 for men, never the
    same for two people whose numbers share YYMMDD (born the same day, or a century apart)."""
    n = len(birth_ordinal)
    group = _yymmdd(birth_ordinal) * 2 + np.where(female, 0, 1)
    order = np.argsort(group, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    sizes = np.diff(np.r_[starts, n])
    if n and sizes.max() > 5000:
        raise ValueError("more than 5,000 people of one sex share a birth date")
    rank = np.arange(n) - np.repeat(starts, sizes)
    offset = np.repeat(rng.integers(0, 5000, len(starts)), sizes)
    sequence = np.empty(n, dtype=np.int64)
    sequence[order] = (offset + rank * 2919) % 5000  # 2919 is coprime to 5000: no repeats
    return sequence + np.where(female, 0, 5000)


def national_ids(birth_ordinal: np.ndarray, sequence: np.ndarray, citizen: np.ndarray) -> np.ndarray:
    """Valid South African ID numbers, YYMMDD SSSS C A Z, as integers of 13 digits (zero-padded)."""
    body = (_yymmdd(birth_ordinal) * 10_000 + sequence) * 100 + np.where(citizen, 0, 1) * 10 + 8
    high, rest = np.divmod(body, 10**8)
    middle, low = np.divmod(rest, 10**4)
    total = _LUHN_FOUR.take(high) + _LUHN_FOUR.take(middle) + _LUHN_FOUR.take(low)
    return body * 10 + (10 - total % 10) % 10


def is_valid_national_id(number: str, birth_date: dt.date | None = None, sex: str | None = None) -> bool:
    """Check an SA ID number's form and Luhn digit, and its agreement with a birth date and sex."""
    if len(number) != 13 or not number.isdigit():
        return False
    digits = np.array([[int(c) for c in number[:12]]])
    if int(luhn_check_digit(digits)[0]) != int(number[12]) or number[10] not in "01":
        return False
    if birth_date is not None and number[:6] != birth_date.strftime("%y%m%d"):
        return False
    if sex is not None and (int(number[6:10]) >= 5000) != (sex == "M"):
        return False
    return True


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
        config, rng = self.config, _rng(self.config, 0, 1)
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
        extra: dict[str, Sequence[tuple[Any, ...]] | clinical.Columns] = {}
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
            _rng(config, day, 4), day, config.start_date, self._stays(day, present)
        )
        state.next_day = day + 1
        extra["diagnoses"] = self._diagnosis_columns(tables.pop("diagnoses"), day)
        ordered = {**extra, **tables, **clinical_tables}
        ordered_tables = {name: ordered[name] for name in TABLE_ORDER if name in ordered}
        return DayRecords(
            day, config.date_of(day), ordered_tables, self._select_streamed(tables["transfers"], day), state
        )

    def _diagnosis_columns(self, rows: list[tuple[Any, ...]], day: int) -> clinical.Columns:
        """The day's diagnoses, the largest table the event loop writes, as columns."""
        admission, seq, code = (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
        return clinical.Columns(
            TABLES["diagnoses"].columns,
            (
                clinical._Int(np.array(admission, dtype=np.int64)),
                clinical._Int(np.array(seq, dtype=np.int64)),
                clinical._Text(np.array([self.code_index[c] for c in code], dtype=np.int64), self.codes),
                clinical._Constant(day, len(rows)),
            ),
        )

    def _staff_day(self, state: HospitalState, tables: dict[str, list[tuple[Any, ...]]], day: int) -> None:
        """Retire everyone turning 65 today, hire a same-specialty replacement, rotate a few."""
        config, rng = self.config, _rng(self.config, day, 2)
        today = config.date_of(day)
        yesterday = (today - dt.timedelta(days=1)).isoformat()
        # everyone born on the day 65 years back (give or take the leap days) whose 65th
        # birthday is today
        back = today.toordinal() - round(RETIREMENT_AGE * 365.25)
        retiring = {
            ordinal
            for ordinal in range(back - 3, back + 4)
            if _birthday(dt.date.fromordinal(ordinal), RETIREMENT_AGE) == today
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
        rng, cancel_draw = _rng(config, day, 3), _CancelDraws(_rng(config, day, 5))
        start = config.start_date
        day_start, day_end = day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY
        # only an inpatient with a step due today changes today: it becomes a copy of its own
        due = [key for key, p in state.inpatients.items() if p.plan and p.plan[0][0] < day_end]
        for key in due:
            state.inpatients[key] = _copy_inpatient(state.inpatients[key])
        present = {
            p.admission_id: Presence(p, p.ward_id, p.plan[-1][0] if p.plan else day_end, day_end)
            for p in state.inpatients.values()
        }
        occupancy = {w.ward_id: 0 for w in config.wards}
        for ward_id, count in state.occupancy().items():
            occupancy[ward_id] = count
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
            when, target = patient.plan[0]
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
        arrivals = []
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
        ordered = sorted(transfers, key=lambda row: (row[6], row[0]))
        slots: list[list[tuple[Any, ...]]] = [[] for _ in range(STREAM_SLOTS_PER_DAY)]
        # the model's timestamps share one format and offset: as strings they sort by time
        slot_minutes = MINUTES_PER_DAY // STREAM_SLOTS_PER_DAY
        day_start = ts(day * MINUTES_PER_DAY, self.config.start_date)
        bounds = [ts(day * MINUTES_PER_DAY + k * slot_minutes, self.config.start_date) for k in range(1, 5)]
        for row in ordered:
            if row[6] < day_start:
                continue  # day 0's records of stays that began before the start are not live
            slots[bisect.bisect_right(bounds, row[6])].append(row)
        chosen = []
        for rows in slots:
            if len(rows) <= TRANSFERS_PER_SLOT:
                chosen.append(rows)
            else:
                picks = np.linspace(0, len(rows) - 1, TRANSFERS_PER_SLOT).round().astype(int)
                chosen.append([rows[i] for i in picks])
        return chosen


#: tables only day 0 fills: the reference data and the catchment population
DAY_ZERO_TABLES = ("icd10_codes", "lab_tests", "medicines", "procedure_codes", "wards", "patients")
#: the order a day's tables are sent in, so foreign keys always point at stored rows
TABLE_ORDER = (
    "icd10_codes",
    "lab_tests",
    "medicines",
    "procedure_codes",
    "wards",
    "patients",
    "staff",
    "staff_assignments",
    "staff_assignment_ends",
    "staff_retirements",
    "bed_requests",
    "admissions",
    "transfers",
    "admission_discharges",
    "diagnoses",
    "lab_results",
    "vital_signs",
    "prescriptions",
    "procedures",
)


def _birthday(birth: dt.date, age: int) -> dt.date:
    """The date someone turns ``age`` (29 February birthdays fall on 1 March in other years)."""
    try:
        return birth.replace(year=birth.year + age)
    except ValueError:
        return dt.date(birth.year + age, 3, 1)


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
