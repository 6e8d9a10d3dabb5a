"""Properties of every ``parse_*`` of the wire: from any bytes, and from JSON of the right shape
with wrong contents (types, missing and extra fields, deep nesting, huge numbers, bad dates and
times), a parser returns a message that is valid (it encodes, parses back equal and, for a
transfer, can be stored) or raises InvalidMessage with a one-line reason PostgreSQL can store;
never another exception. Valid messages round-trip encode -> parse exactly."""

import datetime as dt
import json

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from hospital_stream.errors import InvalidMessage
from hospital_stream.wire import messages
from hospital_stream.wire.copy_text import encode_copy_rows

WARDS = frozenset({1, 2, 3})
DEEP = b"[" * 100_000 + b"]" * 100_000

ids = st.integers(1, 2**63 - 1)
counts = st.integers(0, 2**31 - 1)
#: time zones as a timestamp carries them: whole minutes, within a day
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
timestamps = st.datetimes(timezones=offsets).map(dt.datetime.isoformat)
short_text = st.text(max_size=100)


@st.composite
def streamed_transfers(draw):
    event = draw(st.sampled_from(messages.EVENT_TYPES))
    leaves, enters = messages.EVENT_WARDS[event]
    from_ward = draw(ids) if leaves else None
    to_ward = draw(ids.filter(lambda w: w != from_ward)) if enters else None
    return messages.StreamedTransfer(
        run_id=draw(st.text()),
        day=draw(counts),
        transfer_id=draw(ids),
        admission_id=draw(ids),
        patient_id=draw(ids),
        event_type=event,
        from_ward_id=from_ward,
        to_ward_id=to_ward,
        transferred_at=draw(timestamps),
    )


move = st.tuples(ids, ids, st.sampled_from([1, -1])).map(list)


@st.composite
def occupancy_changes(draw):
    source = draw(st.sampled_from(messages.OCCUPANCY_SOURCES))
    moves = draw(st.lists(move, min_size=1, max_size=1) if source == "stream" else st.lists(move, max_size=5))
    return messages.OccupancyChange(
        ward_id=draw(st.sampled_from(sorted(WARDS))),
        day=draw(counts),
        source=source,
        moves=moves,
        transfer_id=draw(st.integers(0, 2**63 - 1)),
    )


staff_changes = st.builds(
    messages.StaffChange,
    staff_id=ids,
    assignment_id=st.integers(0, 2**63 - 1),
    change=st.sampled_from(messages.STAFF_CHANGES),
    ward_id=counts,
    shift=short_text,
    on=st.just("") | st.dates().map(dt.date.isoformat),
    role=short_text,
    specialty=short_text,
)
ward_census = st.builds(messages.WardCensus, day=counts, ward_id=st.integers(1, 2**31 - 1), occupied=counts)

PARSERS = {
    messages.StreamedTransfer: messages.parse_streamed_transfer,
    messages.OccupancyChange: lambda raw: messages.parse_occupancy_change(raw, WARDS),
    messages.StaffChange: messages.parse_staff_change,
    messages.WardCensus: messages.parse_ward_census,
}
VALID = {
    messages.StreamedTransfer: streamed_transfers(),
    messages.OccupancyChange: occupancy_changes(),
    messages.StaffChange: staff_changes,
    messages.WardCensus: ward_census,
}

#: JSON values of every kind, nested, with huge numbers, awkward strings and dates that are not
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(2**63 - 2, 2**64 + 2)
    | st.floats()
    | st.text()
    | st.sampled_from(["2020-02-30", "2020-01-03\x0010:00:00+02:00", "20200103", "2020-W01-1", "-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _fields(kind) -> tuple[str, ...]:
    return tuple(f.encode_name for f in msgspec.structs.fields(kind))


@st.composite
def wrong_objects(draw, kind, valid):
    """A valid message's JSON with some fields dropped, retyped or added."""
    obj = msgspec.to_builtins(draw(valid))
    for name in draw(st.lists(st.sampled_from(_fields(kind)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del obj[name]
        else:
            obj[name] = draw(json_values)
    obj.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return json.dumps(obj).encode()  # NaN and Infinity too, and surrogates as \ud800


def _assert_storable_reason(exc: InvalidMessage) -> None:
    """One line, and text PostgreSQL can store in ``dead_letters.reason``."""
    reason = str(exc)
    assert reason
    assert "\n" not in reason
    assert "\0" not in reason
    reason.encode()


def _refused_or_valid(kind, parse, raw):
    """``raw`` parses into a message that round-trips, or is refused with a storable reason."""
    try:
        message = parse(raw)
    except InvalidMessage as exc:
        _assert_storable_reason(exc)
        return None
    assert isinstance(message, kind)
    assert parse(message.dumps()) == message
    if kind is messages.StreamedTransfer:  # the sink stores its row with COPY, as timestamptz
        encode_copy_rows([message.row()])
        assert message.when().isoformat() == message.transferred_at
    if kind is messages.StaffChange and message.on:  # a date as PostgreSQL and the views show it
        assert dt.date.fromisoformat(message.on).isoformat() == message.on
    return message


KINDS = sorted(PARSERS, key=lambda k: k.__name__)


@given(st.sampled_from(KINDS), st.binary(max_size=200))
@example(messages.StreamedTransfer, DEEP)
def test_any_bytes_parse_or_are_refused(kind, raw):
    _refused_or_valid(kind, PARSERS[kind], raw)


@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), wrong_objects(k, VALID[k]))))
@example(  # any character may stand between date and time for fromisoformat: COPY then refused a NUL
    (
        messages.StreamedTransfer,
        json.dumps(
            {
                **json.loads(
                    b'{"run_id": "r", "day": 2, "transfer_id": 1,'
                    b' "admission_id": 1, "patient_id": 1, "event_type": "admit", "from_ward_id": null,'
                    b' "to_ward_id": 1}'
                ),
                "transferred_at": "2020-01-03\x0010:00:00+02:00",
            }
        ).encode(),
    )
)
@example((messages.StaffChange, b'{"staff_id": 1, "change": "end", "on": "2020-W01-1"}'))  # a week date
def test_wrong_messages_are_refused_with_a_reason(case):
    kind, raw = case
    _refused_or_valid(kind, PARSERS[kind], raw)


@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), VALID[k])))
def test_valid_messages_round_trip_exactly(case):
    kind, message = case
    assert PARSERS[kind](message.dumps()) == message
