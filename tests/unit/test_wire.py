import datetime as dt
import hashlib
import json
import re

import pytest

from hospital_stream import schema, sim
from hospital_stream.errors import InvalidMessage
from hospital_stream.wire import batch, copy_text, fields, messages

ROWS = [
    (1, "O'Brien\tthe \\ tab", None, True, "2020-01-01T08:00:00+02:00"),
    (2, "line\nbreak", "x", False, "2020-01-02T00:00:00+02:00"),
]


def test_copy_text_round_trips_awkward_values():
    decoded = list(copy_text.decode_copy_rows(copy_text.encode_copy_rows(ROWS)))
    assert decoded == [
        ["1", "O'Brien\tthe \\ tab", None, "t", "2020-01-01T08:00:00+02:00"],
        ["2", "line\nbreak", "x", "f", "2020-01-02T00:00:00+02:00"],
    ]


def test_chunk_round_trip():
    raw = batch.encode_chunk(
        "run1", 3, 7, "admissions", [(1, 2, 3, "2020-01-01", "EMERGENCY", "ER", None, 3)]
    )
    message = batch.parse_batch_message(raw)
    assert message.header.kind == "chunk"
    assert (message.header.day, message.header.seq, message.header.rows) == (3, 7, 1)
    assert message.spec.target == "admissions"
    assert message.rows() == [["1", "2", "3", "2020-01-01", "EMERGENCY", "ER", None, "3"]]


def test_day_close_carries_checkpoint_and_counts():

    raw = batch.encode_day_close("run1", 4, 9, dt.date(2020, 1, 5), {"admissions": 12}, 15, b"\x00\x01binary")
    message = batch.parse_batch_message(raw)
    assert message.header.kind == "day"
    assert message.header.chunks == 9
    assert message.header.row_counts == {"admissions": 12}
    assert message.header.streamed == 15
    assert message.payload == b"\x00\x01binary"


def _tamper(raw: bytes, **changes) -> bytes:
    head, _, payload = raw.partition(b"\n")
    obj = json.loads(head)
    obj.update(changes)
    return json.dumps(obj).encode() + b"\n" + payload


@pytest.mark.parametrize(
    ("make", "reason", "kind"),
    [
        (lambda raw: b"", "empty message", "invalid_message"),
        (lambda raw: b"no newline at all", "no header line", "invalid_message"),
        (lambda raw: b"{not json\n", "invalid JSON", "invalid_message"),
        (lambda raw: _tamper(raw, v=99), "unsupported schema version", "version"),
        (lambda raw: _tamper(raw, v=None), "unsupported schema version", "version"),
        (lambda raw: _tamper(raw, table="users; DROP TABLE patients"), "unknown table", "unknown_table"),
        (lambda raw: _tamper(raw, day=-1), "negative", "invalid_message"),
        (lambda raw: _tamper(raw, day="3"), "must be int", "invalid_message"),
        (lambda raw: raw + b"9\t9\n", "digest mismatch", "digest"),
        (lambda raw: _tamper(raw, digest="0" * 32), "digest mismatch", "digest"),
        (lambda raw: _tamper(raw, rows=5), "header says 5 rows", "invalid_message"),
    ],
)
def test_bad_batch_messages_are_rejected_with_a_reason(make, reason, kind):
    raw = batch.encode_chunk("run1", 1, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)])
    with pytest.raises(InvalidMessage, match=reason) as refused:
        batch.parse_batch_message(make(raw))
    assert refused.value.kind == kind


@pytest.mark.parametrize(
    ("make", "reason", "kind"),
    [
        (lambda raw: _tamper(raw, codec="brotli"), "unknown payload codec 'brotli'", "invalid_message"),
        (lambda raw: _tamper(raw, codec=None), "unknown payload codec", "invalid_message"),
        (lambda raw: _tamper(raw, codec="none"), "digest mismatch", "digest"),  # the frame read as rows
        (lambda raw: raw + b"9\t9\n", "corrupt zstd payload: .* unused data", "invalid_message"),
        (lambda raw: raw[:-3], "corrupt zstd payload", "invalid_message"),
        (lambda raw: raw.partition(b"\n")[0] + b"\nnot a frame", "corrupt zstd payload", "invalid_message"),
        (lambda raw: _tamper(raw, digest="0" * 32), "digest mismatch", "digest"),
    ],
)
def test_bad_compressed_chunks_are_rejected_with_a_reason(make, reason, kind):
    raw = batch.encode_chunk("run1", 1, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)], "zstd")
    with pytest.raises(InvalidMessage, match=reason) as refused:
        batch.parse_batch_message(make(raw))
    assert refused.value.kind == kind


def test_a_day_sends_its_chunks_compressed_and_they_read_back_as_the_plain_ones():
    records = next(sim.iter_days(sim.HospitalConfig(seed=7, beds=120, population=40_000), 1))
    compressed, plain = batch.encode_day("run1", records), batch.encode_day("run1", records, "none")
    assert len(compressed) == len(plain)
    for zstd_raw, plain_raw in zip(compressed, plain, strict=True):
        zstd_message, plain_message = (
            batch.parse_batch_message(zstd_raw),
            batch.parse_batch_message(plain_raw),
        )
        assert zstd_message.payload == plain_message.payload
        assert zstd_message.header.digest == plain_message.header.digest
        assert zstd_message.header.codec == ("zstd" if zstd_message.header.kind == "chunk" else "none")
    assert sum(map(len, compressed)) * 2 < sum(map(len, plain))  # day 0: the catchment, 2.9x


def test_a_chunk_carries_the_blake2b_128_digest_of_its_payload():
    raw = batch.encode_chunk("run1", 1, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)])
    head, _, payload = raw.partition(b"\n")
    assert json.loads(head)["digest"] == hashlib.blake2b(payload, digest_size=16).hexdigest()
    assert batch.parse_batch_message(raw).key() == batch.BATCH_KEY


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        (b"k", None, "tombstone"),
        (None, b"{}", "bad_key"),
        (b"k", b"x" * (fields.MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_a_bad_envelope_is_refused_before_its_payload_is_read(key, value, kind):
    with pytest.raises(InvalidMessage) as refused:
        fields.check_envelope(key, value)
    assert refused.value.kind == kind


def test_a_key_must_be_the_one_the_payload_calls_for():
    fields.check_key(b"7", "7")
    for key in (b"8", b"", None):
        with pytest.raises(InvalidMessage, match="does not match") as refused:
            fields.check_key(key, "7")
        assert refused.value.kind == "bad_key"


def test_a_small_message_naming_another_version_is_refused_and_one_naming_ours_is_not():
    obj = json.loads(_transfer())
    assert messages.parse_streamed_transfer(json.dumps({**obj, "v": fields.SCHEMA_VERSION}).encode())
    with pytest.raises(InvalidMessage, match="unsupported schema version") as refused:
        messages.parse_streamed_transfer(json.dumps({**obj, "v": 3}).encode())
    assert refused.value.kind == "version"


@pytest.mark.parametrize(
    ("raw", "table"),
    [
        (batch.encode_chunk("run1", 1, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)]), "wards"),
        (batch.encode_day_close("run1", 4, 9, dt.date(2020, 1, 5), {}, 0, b"\x00"), ""),
        (b'{"table": "patients"}\nanything, unvalidated', "patients"),
        (b"", None),
        (None, None),
        (b"{not json\n", None),
        (b"\xff\xfe\n", None),
        (b'["a list"]\n', None),
        (b'{"table": 7}\n', None),
    ],
)
def test_batch_table_reads_only_the_header_line(raw, table):
    assert batch.batch_table(raw) == table


def _transfer(**changes) -> bytes:
    obj = {
        "run_id": "r",
        "day": 2,
        "transfer_id": 20000001,
        "admission_id": 2000001,
        "patient_id": 5,
        "event_type": "transfer",
        "from_ward_id": 1,
        "to_ward_id": 2,
        "transferred_at": "2020-01-03T10:00:00+02:00",
    }
    obj.update(changes)
    return json.dumps(obj).encode()


def test_streamed_transfer_parses_and_maps_to_a_row():
    transfer = messages.parse_streamed_transfer(_transfer())
    assert transfer.row() == (20000001, 2000001, 5, "transfer", 1, 2, "2020-01-03T10:00:00+02:00", 2)


@pytest.mark.parametrize(
    ("event", "from_ward", "to_ward"),
    [("admit", None, 2), ("cancel_admit", 2, None), ("cancel_transfer", 2, 1), ("cancel_discharge", None, 2)],
)
def test_streamed_transfer_from_a_simulator_row_round_trips(event, from_ward, to_ward):
    row = (20000001, 2000001, 5, event, from_ward, to_ward, "2020-01-03T10:00:00+02:00", 2)
    transfer = messages.streamed_transfer_from_row("r", row)
    assert messages.parse_streamed_transfer(transfer.dumps()).row() == row


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "JSON object"),
        (_transfer(event_type="teleport"), "unknown event_type"),
        (_transfer(from_ward_id=None), "wrong wards"),
        (_transfer(event_type="admit"), "wrong wards"),
        (_transfer(event_type="cancel_discharge"), "wrong wards"),
        (_transfer(event_type="cancel_admit", to_ward_id=None, from_ward_id=None), "wrong wards"),
        (_transfer(to_ward_id=1), "ward it came from"),
        (_transfer(transferred_at="yesterday"), "not a timestamp"),
        (_transfer(transferred_at="2020-01-03T10:00:00"), "no time zone"),
        (_transfer(patient_id=-4), "not a valid id"),
        (_transfer(patient_id="5"), "must be int"),
        (_transfer(admission_id=True), "must be int"),
        (b"{" + b" " * fields.MAX_MESSAGE_BYTES + b"}", "exceeds"),
    ],
)
def test_bad_streamed_transfers_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidMessage, match=reason):
        messages.parse_streamed_transfer(raw)


def test_a_message_encoded_by_faust_still_parses():
    # before the messages were msgspec Structs they were faust Records, which added a "__faust" key
    obj = {**json.loads(_transfer()), "__faust": {"ns": "hospital_stream.wire.messages.StreamedTransfer"}}
    assert messages.parse_streamed_transfer(json.dumps(obj).encode()).transfer_id == 20000001


def test_a_message_round_trips_with_every_field_encoded():
    change = messages.StaffChange(staff_id=5, change="hire", role="nurse")
    assert json.loads(change.dumps()) == {
        "staff_id": 5,
        "assignment_id": 0,
        "change": "hire",
        "ward_id": 0,
        "shift": "",
        "on": "",
        "role": "nurse",
        "specialty": "",
    }
    assert messages.parse_staff_change(change.dumps()) == change


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"staff_id": 1, "change": "promote"}, "unknown staff change 'promote'"),
        ({"staff_id": 1, "change": "end", "on": "soon"}, "field 'on' is not a date"),
        ({"staff_id": 1, "change": "start", "shift": "x" * 101}, "field 'shift' must be a short string"),
        ({"staff_id": 1, "change": "start", "ward_id": 2**31}, "field 'ward_id' is too large"),
        ({"assignment_id": 1, "change": "start"}, "missing field 'staff_id'"),
    ],
)
def test_bad_staff_changes_are_rejected_with_a_reason(obj, reason):
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        messages.parse_staff_change(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"source": "live"}, "unknown source 'live'"),
        ({"moves": [[1, 2, 5]]}, "moves must be"),
        ({"moves": [[1, 2]]}, "moves must be"),
        ({"source": "stream", "moves": []}, "exactly one move"),
        ({"transfer_id": -1}, "field 'transfer_id' is negative"),
        ({"ward_id": 4}, "unknown ward 4"),
    ],
)
def test_bad_occupancy_changes_are_rejected_with_a_reason(obj, reason):
    good = {"ward_id": 1, "day": 0, "source": "batch", "moves": [[1, 2, 1]]}
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        messages.parse_occupancy_change(json.dumps({**good, **obj}).encode(), frozenset({1}))


def test_missing_field_is_named():
    obj = json.loads(_transfer())
    del obj["admission_id"]
    with pytest.raises(InvalidMessage, match="missing field 'admission_id'"):
        messages.parse_streamed_transfer(json.dumps(obj).encode())


def test_every_table_spec_is_consistent():
    for spec in schema.TABLES.values():
        assert len(set(spec.columns)) == len(spec.columns)
        if spec.mode == "update":
            assert spec.key and set(spec.key) < set(spec.columns)


CONTEXT = sim.HospitalContext(
    frozenset({1, 2, 3}),
    patient_count=1000,
    start_date=__import__("datetime").date(2020, 1, 1),
    schedule_days=864,
)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_transfer(to_ward_id=99), "unknown ward 99"),
        (_transfer(patient_id=1001), "unknown patient 1001"),
        (_transfer(day=900), "past the end of the schedule"),
        (_transfer(transferred_at="2020-01-04T10:00:00+02:00"), "is not on simulated day 2"),
        (_transfer(transferred_at="2020-01-03T22:30:00+00:00"), "is not on simulated day 2"),
    ],
)
def test_streamed_transfers_must_agree_with_the_hospital(raw, reason):
    with pytest.raises(InvalidMessage, match=reason):
        messages.parse_streamed_transfer(raw, CONTEXT)


def test_a_transfer_that_agrees_with_the_hospital_passes():
    # 23:30 UTC on 2 January is 01:30 SAST on 3 January: simulated day 2
    raw = _transfer(transferred_at="2020-01-02T23:30:00+00:00", day=2)
    assert messages.parse_streamed_transfer(raw, CONTEXT).day == 2


def test_numbers_beyond_postgresql_integers_are_rejected_not_crashing_the_sink():
    raw = batch.encode_chunk("run1", 1, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)])
    with pytest.raises(InvalidMessage, match="too large"):
        batch.parse_batch_message(_tamper(raw, day=2**40))
    with pytest.raises(InvalidMessage, match="unknown ward"):
        messages.parse_ward_census(json.dumps({"day": 1, "ward_id": 3_000_000_000, "occupied": 2}).encode())


def test_a_day_message_needs_a_real_date():
    raw = batch.encode_day_close("run1", 4, 9, dt.date(2020, 1, 5), {}, 0, b"state")
    with pytest.raises(InvalidMessage, match="day message with date"):
        batch.parse_batch_message(_tamper(raw, date="yesterday"))


def test_copy_rows_render_every_column_kind_as_field_by_field():
    rows = [
        (1, None, "a", None, True, dt.date(2020, 1, 2), "tab\there", 1.5),
        (22, 3, None, None, False, dt.date(2021, 3, 4), "plain", 2),
    ]
    fields = [
        ["1", "\\N", "a", "\\N", "t", "2020-01-02", "tab\\there", "1.5"],
        ["22", "3", "\\N", "\\N", "f", "2021-03-04", "plain", "2"],
    ]
    assert copy_text.encode_copy_rows(rows) == "".join("\t".join(f) + "\n" for f in fields).encode()
    assert copy_text.encode_copy_rows([(1, "x"), (2,)]) == b"1\tx\n2\n"  # ragged rows too
    assert copy_text.encode_copy_rows([(), ()]) == b"\n\n"
    assert copy_text.encode_copy_rows([]) == b""
