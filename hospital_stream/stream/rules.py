"""The live state the Faust tables hold, as pure functions over plain JSON values.

Tables are updated at least once per change (Kafka may redeliver), so every function here is
idempotent: applying a change twice leaves the same value as applying it once, and a change
delivered again at any later point changes nothing. The order matters only as the pipeline
guarantees it (tests/unit/test_props_rules.py): a ward's ``batch`` changes first arrive in day
order, and a staff member's changes in the order they happened (each key has one partition);
``stream`` changes may come in any order. A ``snapshot`` is a reset: what follows it is sent again.

A ward's value keeps the census at the end of the last closed day (``patients``) and, on top,
the live moves streamed since (``live``). A day's batch replaces both: it replays the ward's
whole day in event-time order, so the live moves it already contains are dropped.

HL7 cancellations (A11, A12, A13) need no rule of their own: each is a later transfer whose
wards are the cancelled event's, swapped, so it moves the patient back like any other move.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hospital_stream.errors import InvalidMessage
from hospital_stream.model import HospitalState
from hospital_stream.schema import TABLES
from hospital_stream.wire.messages import OccupancyChange, StaffChange

WardValue = dict[str, Any]
StaffValue = dict[str, Any]


def new_ward(ward_id: int, beds: int) -> WardValue:
    return {"ward_id": ward_id, "beds": beds, "day": -1, "patients": {}, "live": {}}


def apply_occupancy_change(ward: WardValue, change: OccupancyChange) -> tuple[WardValue, bool]:
    """The ward after ``change``, and whether its census for ``change.day`` should be published.

    Days close strictly in order: a ``batch`` change applies only to the day after the ward's
    last closed day (a later one, replayed from before a crash, would skip days: it is ignored
    and comes again in order). A batch change for the day the ward already closed publishes the
    census again (it may have been lost with a broker); one for an older day changes nothing.
    A ``snapshot`` is the end of the last day PostgreSQL holds completely, sent by a generator
    that resumes from there: it resets the ward, ahead or behind, since every later day follows.
    """
    if change.source == "stream":
        if change.day <= ward["day"] or str(change.transfer_id) in ward["live"]:
            return ward, False
        ((admission_id, patient_id, delta),) = change.moves
        live = {**ward["live"], str(change.transfer_id): [change.day, admission_id, patient_id, delta]}
        return {**ward, "live": live}, False
    if change.source == "batch" and change.day != ward["day"] + 1:
        return ward, change.day == ward["day"]
    patients = {} if change.source == "snapshot" else dict(ward["patients"])
    for admission_id, patient_id, delta in change.moves:
        if delta > 0:
            patients[str(admission_id)] = patient_id
        else:
            patients.pop(str(admission_id), None)
    live = {k: v for k, v in ward["live"].items() if v[0] > change.day}
    return {**ward, "day": change.day, "patients": patients, "live": live}, change.source == "batch"


def current_patients(ward: WardValue) -> tuple[dict[str, int], list[int]]:
    """The patients in the ward now, and admissions streamed in that wait for a free bed.

    A streamed arrival is shown only while the ward, as far as the table knows, has a bed for
    it: discharges of the same day reach the table only with the day's batch.
    """
    patients = dict(ward["patients"])
    waiting = []
    for _, (_day, admission_id, patient_id, delta) in sorted(ward["live"].items(), key=lambda kv: int(kv[0])):
        if delta < 0:
            patients.pop(str(admission_id), None)
        elif len(patients) < ward["beds"]:
            patients[str(admission_id)] = patient_id
        else:
            waiting.append(admission_id)
    return patients, waiting


def ward_view(ward: WardValue, name: str = "", specialty: str = "") -> dict[str, Any]:
    patients, waiting = current_patients(ward)
    return {
        "ward_id": ward["ward_id"],
        "name": name,
        "specialty": specialty,
        "beds": ward["beds"],
        "occupied": len(patients),
        "patients": sorted(patients.values()),
        "as_of_day": ward["day"],
        "live_moves": len(ward["live"]),
        "waiting_for_bed": len(waiting),
    }


_TRANSFERS = TABLES["transfers"]
_ID, _ADMISSION, _PATIENT = (_TRANSFERS.position(c) for c in ("transfer_id", "admission_id", "patient_id"))
_FROM, _TO, _AT = (_TRANSFERS.position(c) for c in ("from_ward_id", "to_ward_id", "transferred_at"))


def occupancy_changes_for_day(
    day: int, ward_ids: Iterable[int], transfer_rows: Sequence[Sequence[Any]]
) -> list[OccupancyChange]:
    """One ``batch`` change per ward for a day's transfers (rows in ``transfers`` column order).

    Every ward gets one, moves or not, so every ward closes every day.
    """
    moves: dict[int, list[list[int]]] = {ward_id: [] for ward_id in ward_ids}
    ordered = sorted(transfer_rows, key=lambda row: (str(row[_AT]), int(row[_ID])))
    for row in ordered:
        admission_id, patient_id = int(row[_ADMISSION]), int(row[_PATIENT])
        if row[_FROM] is not None:
            moves.setdefault(int(row[_FROM]), []).append([admission_id, patient_id, -1])
        if row[_TO] is not None:
            moves.setdefault(int(row[_TO]), []).append([admission_id, patient_id, 1])
    return [OccupancyChange(ward_id=w, day=day, source="batch", moves=m) for w, m in sorted(moves.items())]


def occupancy_changes_for_transfer(transfer: Any) -> list[OccupancyChange]:
    """The one or two ``stream`` changes of a single live transfer."""
    changes = []
    for ward_id, delta in ((transfer.from_ward_id, -1), (transfer.to_ward_id, 1)):
        if ward_id is not None:
            changes.append(
                OccupancyChange(
                    ward_id=ward_id,
                    day=transfer.day,
                    source="stream",
                    transfer_id=transfer.transfer_id,
                    moves=[[transfer.admission_id, transfer.patient_id, delta]],
                )
            )
    return changes


def apply_staff_change(member: StaffValue | None, change: StaffChange) -> StaffValue:
    """The staff member's entry after ``change`` (hire, start, end or retire)."""
    value: StaffValue = dict(
        member
        or {
            "staff_id": change.staff_id,
            "role": "",
            "specialty": "",
            "assignment_id": 0,
            "ward_id": None,
            "shift": None,
            "since": None,
            "ends_on": None,
            "retired_on": None,
        }
    )
    if change.change == "snapshot" and change.assignment_id >= value["assignment_id"]:
        value.update(
            role=change.role,
            specialty=change.specialty,
            assignment_id=change.assignment_id,
            ward_id=change.ward_id,
            shift=change.shift,
            since=change.on,
            ends_on=None,
            retired_on=None,
        )
    elif change.change == "hire":
        value.update(role=change.role, specialty=change.specialty)
    elif change.change == "start" and change.assignment_id > value["assignment_id"]:
        value.update(
            assignment_id=change.assignment_id,
            ward_id=change.ward_id,
            shift=change.shift,
            since=change.on,
            ends_on=None,
        )
    elif change.change == "end" and change.assignment_id == value["assignment_id"]:
        value["ends_on"] = change.on
    elif change.change == "retire":
        value["retired_on"] = change.on
    return value


def is_assigned(member: Mapping[str, Any]) -> bool:
    return member["ward_id"] is not None and member["ends_on"] is None and member["retired_on"] is None


def staff_changes_for_chunk(table: str, rows: Sequence[Sequence[Any]]) -> list[StaffChange]:
    """Staff changes carried by a batch chunk of ``staff``, assignments, ends or retirements."""
    if table == "staff":
        return [
            StaffChange(staff_id=int(r[0]), assignment_id=0, change="hire", role=r[1], specialty=r[2])
            for r in rows
        ]
    if table == "staff_assignments":
        return [
            StaffChange(
                staff_id=int(r[1]),
                assignment_id=int(r[0]),
                change="start",
                ward_id=int(r[2]),
                shift=r[3],
                on=r[4],
            )
            for r in rows
        ]
    if table == "staff_assignment_ends":
        return [StaffChange(staff_id=int(r[1]), assignment_id=int(r[0]), change="end", on=r[2]) for r in rows]
    if table == "staff_retirements":
        return [StaffChange(staff_id=int(r[0]), assignment_id=0, change="retire", on=r[1]) for r in rows]
    return []


def changes_for_chunk(
    table: str, day: int, ward_ids: Iterable[int], rows: Sequence[Sequence[Any]]
) -> list[OccupancyChange] | list[StaffChange]:
    """The ward changes of a ``transfers`` chunk, or the staff changes of a staff chunk.

    Rows that are not the table's (a forged chunk) raise InvalidMessage: no change is sent, and
    the sink dead-letters the chunk with PostgreSQL's reason.
    """
    try:
        if table == "transfers":
            return occupancy_changes_for_day(day, ward_ids, rows)
        return staff_changes_for_chunk(table, rows)
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidMessage(f"a {table} row the table rules cannot read: {exc}") from exc


def snapshot_changes(
    hospital: HospitalState, day: int, wards: Iterable[int]
) -> tuple[list[OccupancyChange], list[StaffChange]]:
    """The tables' entries at the end of ``day``, from the simulator's checkpoint.

    A generator that resumes from PostgreSQL sends these, so tables whose changelog was lost
    with the broker start from the right census instead of from empty wards.
    """
    moves: dict[int, list[list[int]]] = {ward_id: [] for ward_id in wards}
    for patient in sorted(hospital.inpatients.values(), key=lambda p: p.admission_id):
        moves.setdefault(patient.ward_id, []).append([patient.admission_id, patient.patient_id, 1])
    occupancy = [
        OccupancyChange(ward_id=w, day=day, source="snapshot", moves=m) for w, m in sorted(moves.items())
    ]
    staff = [
        StaffChange(
            staff_id=m.staff_id,
            assignment_id=m.assignment_id,
            change="snapshot",
            ward_id=m.ward_id,
            shift=m.shift,
            on=dt.date.fromordinal(m.since).isoformat(),
            role=m.role,
            specialty=m.specialty,
        )
        for m in sorted(hospital.staff.values(), key=lambda m: m.staff_id)
    ]
    return occupancy, staff
