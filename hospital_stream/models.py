"""What travels on the topics, and the parsers that validate raw bytes into it.

Two shapes of message carry the hospital's records:

* A **streamed transfer** is one JSON object: a live ADT event (admit, transfer, discharge, or
  the cancellation of one).
* A **batch message** carries one simulated day in chunks. It is a JSON header line, a newline,
  then a payload: for a ``chunk``, rows of one table in PostgreSQL's COPY text format, so the
  sink can hand them to ``COPY ... FROM STDIN`` untouched; for the day's closing ``day``
  message, the simulator's zlib-compressed checkpoint. The header carries a digest of the
  payload, so a chunk is validated cheaply and PostgreSQL's constraints check the rows.

Our own agents also exchange small :class:`faust.Record` values (occupancy and staff changes,
the daily ward census); those are validated the same way when they reach the sink.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import faust

from hospital_stream.clinical import TABLE_COLUMNS as CLINICAL_COLUMNS
from hospital_stream.errors import InvalidMessage

SCHEMA_VERSION = 2
MAX_MESSAGE_BYTES = 900_000
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


# --- the tables a day's batch carries -----------------------------------------------------------

WriteMode = Literal["insert", "merge_transfers", "update"]


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One kind of batch row: its columns in COPY order and how the sink writes it."""

    name: str
    target: str
    columns: tuple[str, ...]
    mode: WriteMode = "insert"
    #: for ``update`` rows: the columns that find the row to update in ``target``
    key: tuple[str, ...] = ()


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("icd10_codes", "icd10_codes", ("icd10_code", "description", "category")),
        TableSpec("lab_tests", "lab_tests", ("test_code", "name", "specimen", "unit", "ref_low", "ref_high")),
        TableSpec("medicines", "medicines", ("medicine_code", "name", "form")),
        TableSpec("procedure_codes", "procedure_codes", ("procedure_code", "description", "category")),
        TableSpec("wards", "wards", ("ward_id", "code", "name", "specialty", "beds", "sim_day")),
        TableSpec(
            "patients",
            "patients",
            (
                "patient_id",
                "national_id",
                "first_name",
                "last_name",
                "sex",
                "birth_date",
                "address",
                "city",
                "postal_code",
                "sim_day",
            ),
        ),
        TableSpec(
            "staff",
            "staff",
            ("staff_id", "role", "specialty", "first_name", "last_name", "birth_date", "hired_on", "sim_day"),
        ),
        TableSpec(
            "staff_assignments",
            "staff_assignments",
            ("assignment_id", "staff_id", "ward_id", "shift", "starts_on", "sim_day"),
        ),
        TableSpec(
            "staff_assignment_ends",
            "staff_assignments",
            ("assignment_id", "staff_id", "ends_on"),
            mode="update",
            key=("assignment_id", "staff_id"),
        ),
        TableSpec(
            "staff_retirements",
            "staff",
            ("staff_id", "retired_on"),
            mode="update",
            key=("staff_id",),
        ),
        TableSpec(
            "bed_requests",
            "bed_requests",
            ("request_id", "patient_id", "ward_id", "requested_at", "admission_type", "outcome", "sim_day"),
        ),
        TableSpec(
            "admissions",
            "admissions",
            (
                "admission_id",
                "patient_id",
                "ward_id",
                "admitted_at",
                "admission_type",
                "admission_location",
                "cancelled_at",
                "sim_day",
            ),
        ),
        TableSpec(
            "admission_discharges",
            "admissions",
            ("admission_id", "discharged_at", "discharge_location", "died_at"),
            mode="update",
            key=("admission_id",),
        ),
        TableSpec(
            "transfers",
            "transfers",
            (
                "transfer_id",
                "admission_id",
                "patient_id",
                "event_type",
                "from_ward_id",
                "to_ward_id",
                "transferred_at",
                "sim_day",
            ),
            mode="merge_transfers",
        ),
        TableSpec(
            "diagnoses",
            "diagnoses",
            ("admission_id", "seq", "icd10_code", "sim_day"),
        ),
        *(TableSpec(name, name, columns) for name, columns in CLINICAL_COLUMNS.items()),
    )
}
TRANSFER_COLUMNS = TABLES["transfers"].columns


# --- COPY text encoding -------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def _copy_field(value: Any) -> str:
    kind = type(value)
    if kind is int:  # the common cases first: this runs for every field of every tuple row
        return str(value)
    if kind is str:
        return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def encode_copy_rows(rows: Iterable[Sequence[Any]]) -> bytes:
    """Rows as PostgreSQL COPY text: tab-separated, ``\\N`` for NULL, one row per line."""
    rows = list(rows)
    if not rows:
        return b""
    if not rows[0] or len({len(row) for row in rows}) > 1:  # no or ragged columns: field by field
        return "".join("\t".join(map(_copy_field, row)) + "\n" for row in rows).encode()
    # column by column: a column's type is looked at once, not once a field
    fields = zip(*map(_copy_column, zip(*rows, strict=True)), strict=True)
    return ("\n".join(map("\t".join, fields)) + "\n").encode()


def _copy_column(values: Sequence[Any]) -> Iterable[str]:
    """A column's fields as :func:`_copy_field` writes them."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return map(str, values)
    if kinds <= {int, type(None)}:
        return ["\\N" if value is None else str(value) for value in values]
    if kinds <= {str, type(None)} and not _NEEDS_ESCAPE("".join(v for v in values if v is not None)):
        return ["\\N" if value is None else value for value in values]
    return map(_copy_field, values)


def decode_copy_rows(payload: bytes) -> Iterator[list[str | None]]:
    """The inverse of :func:`encode_copy_rows`, as strings (None for NULL)."""
    for line in payload.decode().split("\n")[:-1] if payload else []:
        yield [None if field == "\\N" else _unescape(field) for field in line.split("\t")]


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, chars = [], iter(field)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def digest(payload: bytes) -> str:
    """The checksum a batch header carries for its payload."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


# --- batch messages ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    """The header line of a batch message."""

    kind: Literal["chunk", "day"]
    run_id: str
    day: int
    seq: int
    table: str
    rows: int
    digest: str
    #: only on the ``day`` message: how many chunks the day has, its date, rows per table, and
    #: how many of its transfers were streamed live (the day is complete only once they are stored)
    chunks: int = 0
    date: str = ""
    row_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    streamed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "kind": self.kind,
            "run": self.run_id,
            "day": self.day,
            "seq": self.seq,
            "table": self.table,
            "rows": self.rows,
            "digest": self.digest,
            "chunks": self.chunks,
            "date": self.date,
            "row_counts": self.row_counts,
            "streamed": self.streamed,
        }


@dataclasses.dataclass(frozen=True)
class BatchMessage:
    header: BatchHeader
    payload: bytes

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.header.table]

    def rows(self) -> list[list[str | None]]:
        return list(decode_copy_rows(self.payload))


def encode_chunk(run_id: str, day: int, seq: int, table: str, rows: Sequence[Sequence[Any]]) -> bytes:
    return chunk_message(run_id, day, seq, table, encode_copy_rows(rows), len(rows))


def chunk_message(run_id: str, day: int, seq: int, table: str, payload: bytes, rows: int) -> bytes:
    """A chunk of ``rows`` rows already in COPY text."""
    header = BatchHeader("chunk", run_id, day, seq, table, rows, digest(payload))
    return _join(header, payload)


def encode_day_close(
    run_id: str,
    day: int,
    seq: int,
    date: dt.date,
    row_counts: dict[str, int],
    streamed: int,
    checkpoint: bytes,
) -> bytes:
    header = BatchHeader(
        "day",
        run_id,
        day,
        seq,
        "",
        0,
        digest(checkpoint),
        chunks=seq,
        date=date.isoformat(),
        row_counts=row_counts,
        streamed=streamed,
    )
    return _join(header, checkpoint)


def _join(header: BatchHeader, payload: bytes) -> bytes:
    return json.dumps(header.to_json(), separators=(",", ":")).encode() + b"\n" + payload


def batch_table(raw: bytes | None) -> str | None:
    """The table a batch message's header names, read from its header line alone (None when
    that line is not a JSON object): for a reader that skips most tables unvalidated."""
    head = (raw or b"").partition(b"\n")[0]
    try:
        obj = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    table = obj.get("table") if isinstance(obj, dict) else None
    return table if isinstance(table, str) else None


def parse_batch_message(raw: bytes | None) -> BatchMessage:
    """Validate a batch message's header and digest (not its rows: PostgreSQL checks those)."""
    if not raw:
        raise InvalidMessage("empty message")
    head, sep, payload = raw.partition(b"\n")
    if not sep:
        raise InvalidMessage("no header line")
    obj = _json_object(head)
    if obj.get("v") != SCHEMA_VERSION:
        raise InvalidMessage(f"unsupported schema version {obj.get('v')!r}")
    kind = obj.get("kind")
    if kind not in ("chunk", "day"):
        raise InvalidMessage(f"unknown batch message kind {kind!r}")
    table = obj.get("table", "")
    if kind == "chunk" and table not in TABLES:
        raise InvalidMessage(f"unknown table {table!r}")
    header = BatchHeader(
        kind=kind,
        run_id=_require(obj, "run", str),
        day=_require_count(obj, "day"),
        seq=_require_count(obj, "seq"),
        table=table,
        rows=_require_count(obj, "rows"),
        digest=_require(obj, "digest", str),
        chunks=_require_count(obj, "chunks"),
        date=_require(obj, "date", str),
        row_counts=_require(obj, "row_counts", dict),
        streamed=_require_count(obj, "streamed"),
    )
    if kind == "day":
        try:
            dt.date.fromisoformat(header.date)
        except ValueError as exc:
            raise InvalidMessage(f"day message with date {header.date[:40]!r}") from exc
    if digest(payload) != header.digest:
        raise InvalidMessage("payload digest mismatch")
    lines = payload.count(b"\n")
    if kind == "chunk" and lines != header.rows:
        raise InvalidMessage(f"header says {header.rows} rows, payload has {lines}")
    return BatchMessage(header, payload)


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
    values["transferred_at"] = _copy_field(values["transferred_at"])
    return StreamedTransfer(run_id=run_id, day=values.pop("sim_day"), **values)


@dataclasses.dataclass(frozen=True)
class HospitalContext:
    """What a streamed transfer must agree with: the hospital's wards, patients and calendar."""

    ward_ids: frozenset[int]
    patient_count: int
    start_date: dt.date
    schedule_days: int


def parse_streamed_transfer(raw: bytes | None, context: HospitalContext | None = None) -> StreamedTransfer:
    """Validate one streamed transfer (raw JSON bytes) into a record.

    With a ``context``, also check that its wards and patient exist and that it happened on
    the simulated day it claims.
    """
    obj = _json_object(raw)
    event_type = _require(obj, "event_type", str)
    if event_type not in EVENT_TYPES:
        raise InvalidMessage(f"unknown event_type {event_type!r}")
    from_ward = _optional_id(obj, "from_ward_id")
    to_ward = _optional_id(obj, "to_ward_id")
    if (from_ward is not None, to_ward is not None) != EVENT_WARDS[event_type]:
        raise InvalidMessage(f"{event_type} event with wrong wards {from_ward!r} -> {to_ward!r}")
    if from_ward is not None and from_ward == to_ward:
        raise InvalidMessage("transfer into the ward it came from")
    transferred_at = _require(obj, "transferred_at", str)
    try:
        when = dt.datetime.fromisoformat(transferred_at)
    except ValueError as exc:
        raise InvalidMessage(f"transferred_at {transferred_at[:40]!r} is not a timestamp") from exc
    if when.tzinfo is None:
        raise InvalidMessage("transferred_at has no time zone")
    transfer = StreamedTransfer(
        run_id=_require(obj, "run_id", str),
        day=_require_count(obj, "day"),
        transfer_id=_require_id(obj, "transfer_id"),
        admission_id=_require_id(obj, "admission_id"),
        patient_id=_require_id(obj, "patient_id"),
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
    local = when.astimezone(dt.timezone(dt.timedelta(hours=2)))
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
    obj = _json_object(raw)
    ward_id = _require_id(obj, "ward_id")
    if ward_id not in ward_ids:
        raise InvalidMessage(f"unknown ward {ward_id}")
    source = _require(obj, "source", str)
    if source not in OCCUPANCY_SOURCES:
        raise InvalidMessage(f"unknown source {source[:40]!r}")
    moves = _require(obj, "moves", list)
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
        ward_id=ward_id, day=_require_count(obj, "day"), source=source, moves=moves, transfer_id=transfer_id
    )


def parse_staff_change(raw: bytes | None) -> StaffChange:
    """Validate one staff change (raw JSON bytes)."""
    obj = _json_object(raw)
    change = _require(obj, "change", str)
    if change not in STAFF_CHANGES:
        raise InvalidMessage(f"unknown staff change {change[:40]!r}")
    texts = {}
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
        staff_id=_require_id(obj, "staff_id"),
        assignment_id=assignment_id,
        change=change,
        ward_id=ward_id,
        **texts,
    )


def encode_dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, reason: str, raw: bytes | None
) -> bytes:
    """A message for the dead-letter topic: what an agent without a database could not use."""
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason[:1000],
            "key": (key or b"").hex(),
            "payload": (raw or b"")[:65536].hex(),
            "payload_bytes": len(raw or b""),
        }
    ).encode()


def parse_ward_census(raw: bytes | None) -> WardCensus:
    obj = _json_object(raw)
    ward_id = _require_id(obj, "ward_id")
    if ward_id >= 2**31:
        raise InvalidMessage(f"unknown ward {ward_id}")
    return WardCensus(
        day=_require_count(obj, "day"), ward_id=ward_id, occupied=_require_count(obj, "occupied")
    )


# --- small validation helpers -----------------------------------------------------------------


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidMessage("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidMessage("expected a JSON object")
    return obj


def _require(obj: dict[str, Any], name: str, kind: type) -> Any:
    if name not in obj:
        raise InvalidMessage(f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidMessage(f"field {name!r} must be {kind.__name__}")
    return value


def _require_count(obj: dict[str, Any], name: str) -> int:
    value = _require(obj, name, int)
    if value < 0:
        raise InvalidMessage(f"field {name!r} is negative")
    if value >= 2**31:  # the columns it lands in are PostgreSQL integers
        raise InvalidMessage(f"field {name!r} is too large")
    return value


def _require_id(obj: dict[str, Any], name: str) -> int:
    value = _require(obj, name, int)
    if not 0 < value < 2**63:
        raise InvalidMessage(f"field {name!r} is not a valid id")
    return value


def _optional_id(obj: dict[str, Any], name: str) -> int | None:
    if obj.get(name) is None:
        return None
    return _require_id(obj, name)
