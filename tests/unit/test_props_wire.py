"""Properties of every ``parse_*`` of the wire: from any bytes, and from JSON of the right shape
with wrong contents (types, missing and extra fields, deep nesting, huge numbers, bad dates and
times), a parser returns a message that is valid (it encodes, parses back equal and, for a
transfer, can be stored) or raises InvalidMessage with a one-line reason PostgreSQL can store;
never another exception. Valid messages round-trip encode -> parse exactly."""

import datetime as dt
import json

import msgspec
import pytest
import zstandard
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hospital_stream import schema
from hospital_stream.errors import InvalidMessage
from hospital_stream.wire import batch, compression, messages
from hospital_stream.wire.copy_text import digest, encode_copy_rows
from hospital_stream.wire.fields import MAX_MESSAGE_BYTES
from hospital_stream.wire.kinds import DeadLetterKind

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


# --- batch messages ------------------------------------------------------------------------------

tables = st.sampled_from(sorted(schema.TABLES))


codecs = st.sampled_from(compression.CODECS)


@st.composite
def damaged(draw, data):
    """``data`` with some bytes flipped, cut short or followed by more (or as it is)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        if data and draw(st.booleans()):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif data and draw(st.booleans()):
            del data[draw(st.integers(0, len(data) - 1)) :]
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@st.composite
def batch_raw(draw):
    """A batch message whose header is a valid one's, with some fields wrong, and any payload:
    as it is, or compressed by the codec the header names, whole or damaged."""
    payload = draw(st.binary(max_size=40) | st.just(b"1\t2\n"))
    codec = draw(codecs)
    header = batch.BatchHeader(
        kind=draw(st.sampled_from(["chunk", "day"])),
        run_id=draw(st.text(max_size=8)),
        day=draw(counts),
        seq=draw(counts),
        table=draw(tables),
        rows=payload.count(b"\n"),
        digest=digest(payload),
        codec=codec,
        date=draw(st.dates().map(dt.date.isoformat)),
        row_counts=draw(st.dictionaries(tables, counts, max_size=3)),
        streamed=draw(counts),
    ).to_json()
    for name in draw(st.lists(st.sampled_from(sorted(header)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del header[name]
        else:
            header[name] = draw(json_values)
    body = compression.compress(codec, payload) if draw(st.booleans()) else payload
    return json.dumps(header).encode() + b"\n" + draw(damaged(body) | st.just(body))


def _batch_refused_or_valid(raw):
    try:
        message = batch.parse_batch_message(raw)
    except InvalidMessage as exc:
        _assert_storable_reason(exc)
        return
    header = message.header
    if header.kind == "chunk":
        encoded = batch.chunk_message(
            header.run_id, header.day, header.seq, header.table, message.payload, header.rows, header.codec
        )
    else:
        encoded = batch.encode_day_close(
            header.run_id,
            header.day,
            header.seq,
            dt.date.fromisoformat(header.date),
            header.row_counts,
            header.streamed,
            message.payload,
        )
    assert digest(message.payload) == header.digest  # the plain payload, whatever the codec
    assert batch.parse_batch_message(encoded).payload == message.payload
    try:
        rows = message.rows()
    except InvalidMessage:
        return
    if message.header.kind == "chunk":
        assert len(rows) == message.header.rows


@given(st.binary(max_size=200) | batch_raw())
@example(b"[" * 100_000 + b"\n")  # json.loads raised RecursionError
@example(b'{"v": 2, "kind": "chunk", "table": []}\n')  # TypeError: unhashable type: 'list'
@example(
    b'{"v": 2, "kind": "day", "run": "r", "day": 1, "seq": 1, "rows": 0, "digest": "'
    + digest(b"").encode()
    + b'", "chunks": 1, "date": "2020-01-01", "row_counts": {"a": "b"},'
    b' "streamed": 0}\n'
)  # row counts of any type went to sim_days, where validate casts them
@example(
    b'{"v": 2, "kind": "chunk", "run": "r", "day": 1, "seq": 1, "table": "wards", "rows": 0, "digest": "'
    + digest(b"1\t2").encode()
    + b'", "chunks": 0, "date": "", "row_counts": {}, "streamed": 0}\n1\t2'
)  # a last row without its newline: the header said 0 rows, COPY stored 1
def test_any_batch_message_parses_or_is_refused(raw):
    _batch_refused_or_valid(raw)


@given(tables, st.lists(st.tuples(counts, st.text(), st.none()), max_size=4), counts, counts, codecs)
def test_a_valid_chunk_round_trips(table, rows, day, seq, codec):
    rows = [
        (n, text.replace("\0", ""), none)
        for n, text, none in rows
        if not any("\ud800" <= c <= "\udfff" for c in text)
    ]
    raw = batch.encode_chunk("run", day, seq, table, rows, codec)
    message = batch.parse_batch_message(raw)
    assert message.header.codec == codec
    assert message.header.digest == digest(encode_copy_rows(rows))  # over the plain rows
    assert (message.header.kind, message.header.table, message.header.day, message.header.seq) == (
        "chunk",
        table,
        day,
        seq,
    )
    assert message.rows() == [[str(n), text, None] for n, text, _ in rows]


@given(counts, st.dates(), st.dictionaries(tables, counts), counts, st.binary())
def test_a_valid_day_message_round_trips(day, date, row_counts, streamed, checkpoint):
    raw = batch.encode_day_close("run", day, 3, date, row_counts, streamed, checkpoint)
    header = batch.parse_batch_message(raw).header
    assert (header.day, header.date, header.row_counts, header.streamed, header.chunks) == (
        day,
        date.isoformat(),
        row_counts,
        streamed,
        3,
    )


@given(st.binary(max_size=2000), codecs, st.data())
def test_a_damaged_compressed_chunk_is_refused_or_is_the_chunk_sent(payload, codec, data):
    """Flipped, cut or added bytes in a chunk's body: refused with a storable reason, or, where
    the damage decompresses to the same plain bytes (zstd ignores some of a frame's bits), the
    very payload sent; never other rows."""
    payload = payload.replace(b"\n", b"") + b"\n"
    raw = batch.chunk_message("run", 1, 0, "wards", payload, 1, codec)
    head, _, body = raw.partition(b"\n")
    try:
        message = batch.parse_batch_message(head + b"\n" + data.draw(damaged(body)))
    except InvalidMessage as exc:
        _assert_storable_reason(exc)
        return
    assert message.payload == payload


def _zstd_chunk(frame: bytes, rows: int = 0, plain: bytes = b"") -> bytes:
    header = batch.BatchHeader("chunk", "run", 1, 0, "wards", rows, digest(plain), "zstd")
    return json.dumps(header.to_json()).encode() + b"\n" + frame


@given(st.integers(MAX_MESSAGE_BYTES + 1, 64 * MAX_MESSAGE_BYTES))
def test_a_decompression_bomb_is_refused_as_oversized_before_it_is_decompressed(size):
    bomb = compression.compress("zstd", b"\n" * size)  # a few hundred bytes for up to 57 MB
    assert len(bomb) < 4_000
    with pytest.raises(InvalidMessage, match=f"would decompress to {size} bytes") as refused:
        batch.parse_batch_message(_zstd_chunk(bomb, size, b"\n" * size))
    assert refused.value.kind == DeadLetterKind.OVERSIZED


def _with_declared_size(frame: bytes, size: int) -> bytes:
    """A single-segment zstd frame whose header declares ``size`` (RFC 8878, 3.1.1.1)."""
    descriptor = frame[4]
    assert descriptor >> 5 & 1, "a single-segment frame"
    width = (1, 2, 4, 8)[descriptor >> 6]
    at = 5 + (0, 1, 2, 4)[descriptor & 3]  # after the dictionary id
    value = size - 256 if width == 2 else size
    return frame[:at] + value.to_bytes(width, "little") + frame[at + width :]


@given(st.integers(1, 5_000), st.integers(1, 4))
def test_a_frame_that_understates_its_size_or_does_not_declare_it_is_refused(rows, understated_by):
    """A forged frame header cannot make the decompressor write more than the limit: libzstd
    stops at the size it declares, and a frame that declares none is not read at all."""
    plain = b"1\tward\n" * rows
    assume(not 256 <= len(plain) < 256 + understated_by)  # the 2-byte size field holds 256 and more
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(plain)
    assert zstandard.frame_content_size(_with_declared_size(frame, len(plain))) == len(plain)
    understated = _with_declared_size(frame, len(plain) - understated_by)
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(plain)
    for body, reason in ((understated, "Destination buffer is too small"), (undeclared, "does not declare")):
        with pytest.raises(InvalidMessage, match=reason) as refused:
            batch.parse_batch_message(_zstd_chunk(body, rows, plain))
        _assert_storable_reason(refused.value)
        assert refused.value.kind == DeadLetterKind.INVALID_MESSAGE
