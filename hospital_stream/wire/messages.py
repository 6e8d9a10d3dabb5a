"""The small JSON messages on the topics, each declared once as a :class:`msgspec.Struct` that
both encodes (:meth:`Message.dumps`) and validates (the ``parse_*`` functions).

A **streamed transfer** is a live ADT event (admit, transfer, discharge, or the cancellation of
one). Our own agents also exchange small messages (occupancy and staff changes, the daily ward
census); those are validated the same way when they reach their agent.

The types and ranges of the fields are in their annotations; the rules that tie fields together
are in each Struct's ``__post_init__``; the checks that need to know the hospital (its wards, its
patients, its schedule) are in the parsers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from hospital_stream.errors import InvalidMessage
from hospital_stream.model import calendar
from hospital_stream.model.config import HospitalContext
from hospital_stream.schema import TRANSFER_COLUMNS
from hospital_stream.wire.copy_text import copy_field
from hospital_stream.wire.fields import SCHEMA_VERSION, check_size, check_version
from hospital_stream.wire.kinds import DeadLetterKind

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
OCCUPANCY_SOURCES = ("batch", "stream", "snapshot")
STAFF_CHANGES = ("hire", "start", "end", "retire", "snapshot")

EventType = Literal["admit", "transfer", "discharge", "cancel_admit", "cancel_transfer", "cancel_discharge"]
OccupancySource = Literal["batch", "stream", "snapshot"]
StaffChangeKind = Literal["hire", "start", "end", "retire", "snapshot"]

#: a count or day: it lands in a PostgreSQL integer column
Count = Annotated[int, msgspec.Meta(ge=0, lt=2**31)]
#: a positive id: it lands in a PostgreSQL bigint column
Id = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
#: an id where 0 means "none"
OptionalId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
ShortText = Annotated[str, msgspec.Meta(max_length=100)]


class Message(msgspec.Struct, frozen=True):
    """A small JSON message of the topics. Every field is encoded, defaults too."""

    def dumps(self) -> bytes:
        return msgspec.json.encode(self)

    def key(self) -> str:
        """The key it travels with: its partitioning key, and the one a consumer checks."""
        raise NotImplementedError


# --- streamed transfers and the agents' own messages ---------------------------------------------


class StreamedTransfer(Message, frozen=True):
    """A live ADT event, streamed while its simulated day is under way."""

    run_id: str
    day: Count
    transfer_id: Id
    admission_id: Id
    patient_id: Id
    event_type: EventType
    from_ward_id: Id | None
    to_ward_id: Id | None
    transferred_at: str

    def __post_init__(self) -> None:
        from_ward, to_ward = self.from_ward_id, self.to_ward_id
        if (from_ward is not None, to_ward is not None) != EVENT_WARDS[self.event_type]:
            raise ValueError(f"{self.event_type} event with wrong wards {from_ward!r} -> {to_ward!r}")
        if from_ward is not None and from_ward == to_ward:
            raise ValueError("transfer into the ward it came from")
        self.when()

    def key(self) -> str:
        return str(self.admission_id)

    def when(self) -> dt.datetime:
        """When the event happened: ``transferred_at``, an ISO 8601 timestamp as
        ``datetime.isoformat`` writes it, with a time zone of whole minutes (what PostgreSQL's
        timestamptz reads; ``fromisoformat`` alone takes any character between date and time)."""
        try:
            when = dt.datetime.fromisoformat(self.transferred_at)
        except ValueError:
            raise ValueError(f"transferred_at {self.transferred_at[:40]!r} is not a timestamp") from None
        offset = when.utcoffset()
        if offset is None:
            raise ValueError("transferred_at has no time zone")
        if when.isoformat() != self.transferred_at or offset % dt.timedelta(minutes=1):
            raise ValueError(f"transferred_at {self.transferred_at[:40]!r} is not an ISO 8601 timestamp")
        return when

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
    """Validate one streamed transfer (raw JSON bytes) into a message.

    With a ``context``, also check that its wards and patient exist and that it happened on
    the simulated day it claims.
    """
    transfer = _decode(raw, StreamedTransfer)
    if context is not None:
        _check_context(transfer, context)
    return transfer


def _check_context(transfer: StreamedTransfer, context: HospitalContext) -> None:
    for ward_id in (transfer.from_ward_id, transfer.to_ward_id):
        if ward_id is not None and ward_id not in context.ward_ids:
            raise InvalidMessage(f"unknown ward {ward_id}")
    if transfer.patient_id > context.patient_count:
        raise InvalidMessage(f"unknown patient {transfer.patient_id}")
    check_in_schedule(transfer.day, context.schedule_days)
    date = context.start_date + dt.timedelta(days=transfer.day)
    local = calendar.local(transfer.when())
    if local.date() != date:
        raise InvalidMessage(
            f"transferred_at {local.isoformat()} is not on simulated day {transfer.day} ({date})"
        )


class OccupancyChange(Message, frozen=True):
    """Moves into (+1) and out of (-1) one ward, from a day's batch or one streamed transfer.

    ``moves`` holds ``[admission_id, patient_id, +1 | -1]`` in event-time order.
    A ``batch`` change holds the ward's whole day and closes it; a ``stream`` change is one
    live event (``transfer_id``) shown on top of the last closed day until its batch arrives;
    a ``snapshot`` holds everyone in the ward at the end of ``day`` (see state.snapshot_changes).
    """

    ward_id: Id
    day: Count
    source: OccupancySource
    moves: list[list[int]]
    transfer_id: OptionalId = 0

    def __post_init__(self) -> None:
        for move in self.moves:
            if len(move) != 3 or move[0] <= 0 or move[1] <= 0 or move[2] not in (1, -1):
                raise ValueError("moves must be [admission_id, patient_id, +1 or -1]")
        if self.source == "stream" and len(self.moves) != 1:
            raise ValueError("a stream change holds exactly one move")

    def key(self) -> str:
        return str(self.ward_id)


class StaffChange(Message, frozen=True, kw_only=True):
    """A staff member hired or retiring, or one of their ward assignments starting or ending."""

    staff_id: Id
    assignment_id: OptionalId = 0
    change: StaffChangeKind
    ward_id: Annotated[int, msgspec.Meta(ge=0, lt=2**31)] = 0
    shift: ShortText = ""
    on: ShortText = ""
    role: ShortText = ""
    specialty: ShortText = ""

    def __post_init__(self) -> None:
        if self.on:  # YYYY-MM-DD: fromisoformat alone also takes 20200101 and week dates
            try:
                canonical = dt.date.fromisoformat(self.on).isoformat() == self.on
            except ValueError:
                canonical = False
            if not canonical:
                raise ValueError(f"field 'on' is not a date: {self.on[:40]!r}")

    def key(self) -> str:
        return str(self.staff_id)


class WardCensus(Message, frozen=True):
    """Occupied beds of one ward at the end of a simulated day, as the occupancy table saw it."""

    day: Count
    ward_id: Id
    occupied: Count

    def __post_init__(self) -> None:
        if self.ward_id >= 2**31:  # ward ids are PostgreSQL integers
            raise ValueError(f"unknown ward {self.ward_id}")

    def key(self) -> str:
        return str(self.ward_id)


def check_in_schedule(day: int, schedule_days: int) -> None:
    """A message's simulated day is one of the schedule's (0 .. HOSPITAL_SCHEDULE_DAYS - 1)."""
    if day >= schedule_days:
        raise InvalidMessage(
            f"day {day} is past the end of the schedule ({schedule_days} days)",
            DeadLetterKind.OUTSIDE_SCHEDULE,
        )


def parse_occupancy_change(raw: bytes | None, ward_ids: frozenset[int]) -> OccupancyChange:
    """Validate one occupancy change (raw JSON bytes) for a ward of this hospital."""
    change = _decode(raw, OccupancyChange)
    if change.ward_id not in ward_ids:
        raise InvalidMessage(f"unknown ward {change.ward_id}")
    return change


def parse_staff_change(raw: bytes | None) -> StaffChange:
    """Validate one staff change (raw JSON bytes)."""
    return _decode(raw, StaffChange)


def parse_ward_census(raw: bytes | None, context: HospitalContext | None = None) -> WardCensus:
    """Validate one ward's census (raw JSON bytes); with a ``context``, for a ward of this
    hospital on a day of the schedule."""
    census = _decode(raw, WardCensus)
    if context is not None:
        if census.ward_id not in context.ward_ids:
            raise InvalidMessage(f"unknown ward {census.ward_id}")
        check_in_schedule(census.day, context.schedule_days)
    return census


# --- decoding ------------------------------------------------------------------------------------

M = TypeVar("M", bound=Message)

_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class _Versioned(msgspec.Struct):
    v: Any = SCHEMA_VERSION


_VERSION = msgspec.json.Decoder(_Versioned)
_AT = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_FIELD = re.compile(r"\.(\w+)")
_BOUND = re.compile(r"Expected `int` (?P<op>[<>]=) (?P<bound>-?\d+)")


def _decode(raw: bytes | None, kind: type[M]) -> M:
    """``raw`` decoded into a ``kind`` message, or :class:`InvalidMessage` with a readable reason."""
    if not raw:
        raise InvalidMessage("empty message")
    check_size(raw)
    if b'"v"' in raw:  # the small messages carry no version: one that names one must name ours
        with contextlib.suppress(msgspec.DecodeError):  # not JSON: the decoder below says why
            check_version(_VERSION.decode(raw).v)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        message: M = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidMessage(_reason(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidMessage(f"invalid JSON: {exc}") from exc
    return message


def _reason(error: str) -> str:
    """A msgspec validation error in the words the dead letters have always used."""
    match = _AT.fullmatch(error)
    what, path = (match["what"], match["path"]) if match else (error, None)
    field = _FIELD.match(path or "")
    name = field[1] if field else None
    if missing := re.fullmatch(r"Object missing required field `(\w+)`", what):
        return f"missing field {missing[1]!r}"
    if name is None:
        return "expected a JSON object" if what.startswith("Expected `object`") else what
    if enum := re.fullmatch(r"Invalid enum value (.*)", what, re.DOTALL):
        return f"unknown {'staff change' if name == 'change' else name} {enum[1]}"
    if bound := _BOUND.match(what):
        if bound["op"] == ">=" and bound["bound"] == "0":
            return f"field {name!r} is negative"
        if bound["op"] == "<=" and int(bound["bound"]) == 2**31 - 1:
            return f"field {name!r} is too large"
        return f"field {name!r} is not a valid id"
    if what.startswith("Expected `str` of length <="):
        return f"field {name!r} must be a short string"
    if kind := re.fullmatch(r"Expected `([^`]*)`, got `([^`]*)`", what):
        return f"field {name!r} must be {kind[1]}, not {kind[2]}"
    return f"field {name!r}: {what}"
