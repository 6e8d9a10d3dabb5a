"""The small JSON messages on the topics, and the parsers that validate raw bytes into them.

A **streamed transfer** is a live ADT event (admit, transfer, discharge, or the cancellation of
one). Our own agents also exchange small :class:`faust.Record` values (occupancy and staff
changes, the daily ward census); those are validated the same way when they reach their agent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import faust

from hospital_stream.errors import InvalidMessage
from hospital_stream.model import calendar
from hospital_stream.model.config import HospitalContext
from hospital_stream.schema import TRANSFER_COLUMNS
from hospital_stream.wire.copy_text import copy_field
from hospital_stream.wire.fields import json_object, optional_id, require, require_count, require_id

#: HL7 ADT events and whether each leaves a ward and enters one: A01 admit, A02 transfer, A03
#: discharge, and A11, A12, A13 that cancel them. A cancellation is a later event that reverses
#: the admission's last one, so its wards are that event's, swapped.
EVENT_WARDS = {
    "admit": (False, True),
    "transfer": (True, True),
    "discharge": (True, False),
    "cancel_admit": (True, False),
    "cancel_transfer": (True, True),
    "cancel_discharge": (False, True),
}
EVENT_TYPES = tuple(EVENT_WARDS)


# --- streamed transfers and the agents' own records ----------------------------------------------


class StreamedTransfer(faust.Record, serializer="json"):
    """A live ADT event, streamed while its simulated day is under way."""

    run_id: str
    day: int
    transfer_id: int
    admission_id: int
    patient_id: int
    event_type: str
    from_ward_id: int | None
    to_ward_id: int | None
    transferred_at: str

    def row(self) -> tuple[Any, ...]:
        """The transfer as a row of the ``transfers`` table."""
        return (
            self.transfer_id,
            self.admission_id,
            self.patient_id,
            self.event_type,
            self.from_ward_id,
            self.to_ward_id,
            self.transferred_at,
            self.day,
        )


def streamed_transfer_from_row(run_id: str, row: Sequence[Any]) -> StreamedTransfer:
    values = dict(zip(TRANSFER_COLUMNS, row, strict=True))
    values["transferred_at"] = copy_field(values["transferred_at"])
    return StreamedTransfer(run_id=run_id, day=values.pop("sim_day"), **values)


def parse_streamed_transfer(raw: bytes | None, context: HospitalContext | None = None) -> StreamedTransfer:
    """Validate one streamed transfer (raw JSON bytes) into a record.

    With a ``context``, also check that its wards and patient exist and that it happened on
    the simulated day it claims.
    """
    obj = json_object(raw)
    event_type = require(obj, "event_type", str)
    if event_type not in EVENT_TYPES:
        raise InvalidMessage(f"unknown event_type {event_type!r}")
    from_ward = optional_id(obj, "from_ward_id")
    to_ward = optional_id(obj, "to_ward_id")
    if (from_ward is not None, to_ward is not None) != EVENT_WARDS[event_type]:
        raise InvalidMessage(f"{event_type} event with wrong wards {from_ward!r} -> {to_ward!r}")
    if from_ward is not None and from_ward == to_ward:
        raise InvalidMessage("transfer into the ward it came from")
    transferred_at = require(obj, "transferred_at", str)
    try:
        when = dt.datetime.fromisoformat(transferred_at)
    except ValueError as exc:
        raise InvalidMessage(f"transferred_at {transferred_at[:40]!r} is not a timestamp") from exc
    if when.tzinfo is None:
        raise InvalidMessage("transferred_at has no time zone")
    transfer = StreamedTransfer(
        run_id=require(obj, "run_id", str),
        day=require_count(obj, "day"),
        transfer_id=require_id(obj, "transfer_id"),
        admission_id=require_id(obj, "admission_id"),
        patient_id=require_id(obj, "patient_id"),
        event_type=event_type,
        from_ward_id=from_ward,
        to_ward_id=to_ward,
        transferred_at=transferred_at,
    )
    if context is not None:
        _check_context(transfer, when, context)
    return transfer


def _check_context(transfer: StreamedTransfer, when: dt.datetime, context: HospitalContext) -> None:
    for ward_id in (transfer.from_ward_id, transfer.to_ward_id):
        if ward_id is not None and ward_id not in context.ward_ids:
            raise InvalidMessage(f"unknown ward {ward_id}")
    if transfer.patient_id > context.patient_count:
        raise InvalidMessage(f"unknown patient {transfer.patient_id}")
    if transfer.day >= context.schedule_days:
        raise InvalidMessage(f"day {transfer.day} is past the end of the schedule")
    date = context.start_date + dt.timedelta(days=transfer.day)
    local = calendar.local(when)
    if local.date() != date:
        raise InvalidMessage(
            f"transferred_at {local.isoformat()} is not on simulated day {transfer.day} ({date})"
        )


class OccupancyChange(faust.Record, serializer="json"):
    """Moves into (+1) and out of (-1) one ward, from a day's batch or one streamed transfer.

    ``moves`` holds ``[admission_id, patient_id, +1 | -1]`` in event-time order.
    A ``batch`` change holds the ward's whole day and closes it; a ``stream`` change is one
    live event (``transfer_id``) shown on top of the last closed day until its batch arrives;
    a ``snapshot`` holds everyone in the ward at the end of ``day`` (see state.snapshot_changes).
    """

    ward_id: int
    day: int
    source: str
    moves: list[list[int]]
    transfer_id: int = 0


class StaffChange(faust.Record, serializer="json"):
    """A staff member hired or retiring, or one of their ward assignments starting or ending."""

    staff_id: int
    assignment_id: int
    change: str  # hire | start | end | retire | snapshot
    ward_id: int = 0
    shift: str = ""
    on: str = ""
    role: str = ""
    specialty: str = ""


class WardCensus(faust.Record, serializer="json"):
    """Occupied beds of one ward at the end of a simulated day, as the occupancy table saw it."""

    day: int
    ward_id: int
    occupied: int


OCCUPANCY_SOURCES = ("batch", "stream", "snapshot")
STAFF_CHANGES = ("hire", "start", "end", "retire", "snapshot")


def parse_occupancy_change(raw: bytes | None, ward_ids: frozenset[int]) -> OccupancyChange:
    """Validate one occupancy change (raw JSON bytes) for a ward of this hospital."""
    obj = json_object(raw)
    ward_id = require_id(obj, "ward_id")
    if ward_id not in ward_ids:
        raise InvalidMessage(f"unknown ward {ward_id}")
    source = require(obj, "source", str)
    if source not in OCCUPANCY_SOURCES:
        raise InvalidMessage(f"unknown source {source[:40]!r}")
    moves = require(obj, "moves", list)
    for move in moves:
        if (
            not isinstance(move, list)
            or len(move) != 3
            or not all(type(v) is int for v in move)
            or move[0] <= 0
            or move[1] <= 0
            or move[2] not in (1, -1)
        ):
            raise InvalidMessage("moves must be [admission_id, patient_id, +1 or -1]")
    if source == "stream" and len(moves) != 1:
        raise InvalidMessage("a stream change holds exactly one move")
    transfer_id = obj.get("transfer_id", 0)
    if type(transfer_id) is not int or transfer_id < 0:
        raise InvalidMessage("field 'transfer_id' must be a non-negative int")
    return OccupancyChange(
        ward_id=ward_id, day=require_count(obj, "day"), source=source, moves=moves, transfer_id=transfer_id
    )


def parse_staff_change(raw: bytes | None) -> StaffChange:
    """Validate one staff change (raw JSON bytes)."""
    obj = json_object(raw)
    change = require(obj, "change", str)
    if change not in STAFF_CHANGES:
        raise InvalidMessage(f"unknown staff change {change[:40]!r}")
    texts: dict[str, Any] = {}
    for name in ("shift", "on", "role", "specialty"):
        value = obj.get(name, "")
        if not isinstance(value, str) or len(value) > 100:
            raise InvalidMessage(f"field {name!r} must be a short string")
        texts[name] = value
    if texts["on"]:
        try:
            dt.date.fromisoformat(texts["on"])
        except ValueError as exc:
            raise InvalidMessage(f"field 'on' is not a date: {texts['on'][:40]!r}") from exc
    ward_id = obj.get("ward_id", 0)
    if type(ward_id) is not int or not 0 <= ward_id < 2**31:
        raise InvalidMessage("field 'ward_id' must be a ward id")
    assignment_id = obj.get("assignment_id", 0)
    if type(assignment_id) is not int or not 0 <= assignment_id < 2**63:
        raise InvalidMessage("field 'assignment_id' must be an id")
    return StaffChange(
        staff_id=require_id(obj, "staff_id"),
        assignment_id=assignment_id,
        change=change,
        ward_id=ward_id,
        **texts,
    )


def parse_ward_census(raw: bytes | None) -> WardCensus:
    obj = json_object(raw)
    ward_id = require_id(obj, "ward_id")
    if ward_id >= 2**31:
        raise InvalidMessage(f"unknown ward {ward_id}")
    return WardCensus(day=require_count(obj, "day"), ward_id=ward_id, occupied=require_count(obj, "occupied"))
