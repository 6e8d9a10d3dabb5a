"""What the model carries from one day to the next: inpatients with their planned stays, staff, presence."""

from __future__ import annotations

import dataclasses
import functools

from hospital_stream.model.config import (
    ADMISSION_TYPES,
    ALLIED_SPECIALTIES,
    DISCHARGE_LOCATIONS,
    EMERGENCY_UNIT,
    ICU,
    NURSE_SHIFTS,
    SPECIALTIES,
    STAFF_PER_BED,
    SUPPORT_SPECIALTIES,
)

# --- state ---------------------------------------------------------------------------------------


CHECKPOINT_WORDS = {
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
        word = CHECKPOINT_WORDS
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


def copy_inpatient(p: Inpatient) -> Inpatient:
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
