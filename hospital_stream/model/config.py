"""The hospital's configuration: services, wards planned from the catchment's demand, and the
constants the model is calibrated with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any

import numpy as np

from hospital_stream.schema import TABLES

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

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> HospitalConfig:
        """The config :meth:`to_json` recorded: its share is the planned one again when it was
        (``to_json`` rounds it, and the rounded share would simulate another hospital)."""
        planned = cls(
            seed=int(obj["seed"]),
            start_date=dt.date.fromisoformat(obj["start_date"]),
            beds=int(obj["beds"]),
            population=int(obj["population"]),
        )
        if planned.to_json() == obj:
            return planned
        return dataclasses.replace(planned, market_share=float(obj["market_share"]))

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


@dataclasses.dataclass(frozen=True)
class HospitalContext:
    """What a streamed transfer must agree with: the hospital's wards, patients and calendar."""

    ward_ids: frozenset[int]
    patient_count: int
    start_date: dt.date
    schedule_days: int


def day_rng(config: HospitalConfig, day: int, *purpose: int) -> np.random.Generator:
    """The random generator of one purpose on one day: every draw of the model comes from one."""
    return np.random.default_rng([config.seed, day, *purpose])
