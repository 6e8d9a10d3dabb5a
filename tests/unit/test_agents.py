"""The agents, the Faust way: ``agent.test_context()`` on memory:// tables, with in-memory doubles
for the worker's services (``services._current``) and spies on the topics the agents send to."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import types

import pytest
from faust.types import TP

from hospital_stream import agents, services, topics
from hospital_stream.errors import DatabaseError
from hospital_stream.schema import TABLES
from hospital_stream.settings import Settings
from hospital_stream.sink import Incoming, StoreResult
from hospital_stream.stream import rules
from hospital_stream.stream.watchdog import StallWatch
from hospital_stream.tables import assignment_by_staff, occupancy_by_ward
from hospital_stream.wire import batch
from hospital_stream.wire.batch import BATCH_KEY
from hospital_stream.wire.messages import (
    OccupancyChange,
    StaffChange,
    StreamedTransfer,
    WardCensus,
    parse_streamed_transfer,
)

TIMEOUT = 10.0


# --- doubles and helpers -------------------------------------------------------------------------


class ProducerDouble:
    """The routing agent's producer: records each send; the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.sent.append((topic, key, value, partition, timestamp, headers))
        acknowledged = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


class SinkDouble:
    """The sink as ``store_records`` relies on it: ``store`` returns once the buffer is stored
    (here: recorded), or raises ``DatabaseError`` having stored none of it."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.buffers: list[list[Incoming]] = []
        self.gate: asyncio.Event | None = None  # when set: store waits for it (a slow commit)
        self.failure: BaseException | None = None
        self.run: str | None = "run-1"  # the run the database holds

    async def stored_run(self):
        return self.run

    async def store(self, messages):
        self.buffers.append(list(messages))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return StoreResult(rows=len(messages))


class WorkerExited(BaseException):
    """What the patched ``exit_now`` raises: like ``os._exit``, nothing after it runs."""


def in_loop(test):
    """Run an ``async def`` test in a fresh event loop (the repo has no pytest-asyncio)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TIMEOUT))

    return run


async def eventually(predicate, within=2.0):
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def put(agent, value, *, topic=None, key=None, partition=None, timestamp=None):
    """``agent.put``, then wait until the agent's body is done with the value.

    test_context names its messages after the agent's topic, and ``"<internal>"`` when that
    topic has several names; ``topic`` names the message for the agents that read two topics.
    ``agent.put`` returns once the stream handed the value on; the body is done with it once
    its stream asks for the next one (``current_event`` goes back to None).
    """
    if topic is not None:
        agent._get_strtopic = lambda channel: topic
    event = await agent.put(value, key=key, partition=partition, timestamp=timestamp)
    await eventually(lambda: agent.stream().current_event is None)
    return event


def spy_send(monkeypatch, topic):
    """Record what an agent sends to ``topic`` (key, value) instead of producing it."""
    sent: list[tuple[bytes | None, bytes | None]] = []

    async def send(*, key=None, value=None, **kwargs):
        sent.append((key, value))

    monkeypatch.setattr(topic, "send", send)
    return sent


def _clear_tables() -> None:
    for table in (occupancy_by_ward, assignment_by_staff):
        table.data.clear()  # the memory:// store itself: no changelog deletes


@pytest.fixture
def worker(monkeypatch):
    """The worker's services as doubles; empty tables; no broker-watch state."""
    double = types.SimpleNamespace(
        router_producer=ProducerDouble(),
        sink=SinkDouble(),
        generator=None,
        stall_watch=StallWatch(Settings()),
    )
    monkeypatch.setattr(services, "_current", double)
    monkeypatch.setattr(agents, "_offsets_seen", {})
    _clear_tables()
    yield double
    services._current = None
    _clear_tables()


@pytest.fixture
def dead_letters(monkeypatch):
    return spy_send(monkeypatch, topics.dead_letters)


@pytest.fixture
def census(monkeypatch):
    return spy_send(monkeypatch, topics.ward_census)


def _ward_ids() -> list[int]:
    return sorted(services.wards())


def _transfer(event_type: str, from_ward: int | None, to_ward: int | None, **overrides) -> bytes:
    values = {
        "run_id": "run-1",
        "day": 0,
        "transfer_id": 101,
        "admission_id": 7,
        "patient_id": 42,
        "event_type": event_type,
        "from_ward_id": from_ward,
        "to_ward_id": to_ward,
        "transferred_at": "2020-01-01T10:30:00+02:00",
        **overrides,
    }
    return StreamedTransfer(**values).dumps()


def _transfer_row(transfer_id, admission_id, patient_id, event_type, from_ward, to_ward, at, day=0):
    row = (transfer_id, admission_id, patient_id, event_type, from_ward, to_ward, at, day)
    assert len(row) == len(TABLES["transfers"].columns)
    return row


# --- route_hospital_records ----------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "wards"), [("admit", (None, 0)), ("transfer", (0, 1))])
@in_loop
async def test_a_streamed_transfer_is_routed_as_its_wards_occupancy_changes(worker, event_type, wards):
    ids = _ward_ids()
    from_ward, to_ward = (None if w is None else ids[w] for w in wards)
    raw = _transfer(event_type, from_ward, to_ward)
    expected = rules.occupancy_changes_for_transfer(parse_streamed_transfer(raw, services.context()))
    assert len(expected) == (1 if event_type == "admit" else 2)

    async with agents.route_hospital_records.test_context() as agent:
        await put(agent, raw, topic=topics.STREAMED_TRANSFERS, key=b"7", timestamp=1577867400.0)

    assert worker.router_producer.sent == [
        (topics.OCCUPANCY_CHANGES, str(change.ward_id).encode(), change.dumps(), None, 1577867400.0, None)
        for change in expected
    ]


@in_loop
async def test_a_transfers_chunk_closes_every_wards_day_with_its_moves(worker):
    first, second = _ward_ids()[:2]
    rows = [
        _transfer_row(1, 7, 42, "admit", None, first, "2020-01-01T08:00:00+02:00"),
        _transfer_row(2, 7, 42, "transfer", first, second, "2020-01-01T09:00:00+02:00"),
    ]
    raw = batch.encode_chunk("run-1", 0, 3, "transfers", rows)

    async with agents.route_hospital_records.test_context() as agent:
        await put(agent, raw, topic=topics.DAY_BATCHES, key=b"hospital-batch")

    sent = worker.router_producer.sent
    assert [(topic, key) for topic, key, *_ in sent] == [
        (topics.OCCUPANCY_CHANGES, str(ward_id).encode()) for ward_id in _ward_ids()
    ]
    changes = {int(key): json.loads(value) for _, key, value, *_ in sent}
    assert all(c["source"] == "batch" and c["day"] == 0 for c in changes.values())
    assert changes[first]["moves"] == [[7, 42, 1], [7, 42, -1]]
    assert changes[second]["moves"] == [[7, 42, 1]]
    assert all(changes[w]["moves"] == [] for w in _ward_ids()[2:])
    assert all(timestamp is None for *_, timestamp, _ in sent)


@in_loop
async def test_a_staff_chunk_is_routed_as_staff_changes_keyed_by_staff_id(worker):
    raw = batch.encode_chunk(
        "run-1", 0, 1, "staff_assignments", [(11, 5, _ward_ids()[0], "day", "2020-01-01", 0)]
    )
    async with agents.route_hospital_records.test_context() as agent:
        await put(agent, raw, topic=topics.DAY_BATCHES, key=b"hospital-batch")

    ((topic, key, value, *_),) = worker.router_producer.sent
    assert (topic, key) == (topics.STAFF_CHANGES, b"5")
    assert json.loads(value)["change"] == "start" and json.loads(value)["assignment_id"] == 11


@pytest.mark.parametrize(
    "raw",
    [
        batch.encode_chunk(
            "run-1",
            0,
            0,
            "patients",
            [(42, "NID42", "Ada", "Lovelace", "F", "1980-01-01", "1 Main St", "Town", "00100", 0)],
        ),
        batch.encode_chunk("run-1", 0, 5, "lab_results", [tuple(range(len(TABLES["lab_results"].columns)))]),
        batch.encode_day_close("run-1", 0, 6, dt.date(2020, 1, 1), {}, 0, b"\x00"),
    ],
    ids=["patients", "clinical", "day-close"],
)
@in_loop
async def test_bulk_and_closing_batch_messages_produce_no_changes(worker, raw):
    async with agents.route_hospital_records.test_context() as agent:
        await put(agent, raw, topic=topics.DAY_BATCHES, key=b"hospital-batch")
    assert worker.router_producer.sent == []


BATCH = BATCH_KEY.encode()


@pytest.mark.parametrize(
    ("topic", "raw", "key"),
    [
        (topics.STREAMED_TRANSFERS, b"{not json", b"7"),
        (topics.STREAMED_TRANSFERS, _transfer("admit", None, 10_000), b"7"),  # no such ward
        (
            topics.STREAMED_TRANSFERS,
            _transfer("admit", None, 1, transferred_at="2020-01-05T10:00:00+02:00"),
            b"7",
        ),
        (topics.DAY_BATCHES, batch.encode_chunk("run-1", 0, 3, "transfers", []) + b"1\t2\n", BATCH),  # digest
        (topics.STREAMED_TRANSFERS, _transfer("admit", None, 1), b"x"),  # not keyed by its admission
        (topics.STREAMED_TRANSFERS, _transfer("admit", None, 1), None),  # keyless
        (topics.STREAMED_TRANSFERS, None, b"7"),  # a tombstone
        (topics.DAY_BATCHES, batch.encode_chunk("run-1", 0, 3, "transfers", []), b"x"),
        (topics.DAY_BATCHES, batch.encode_chunk("run-1", 999_999, 3, "transfers", []), BATCH),  # past the end
        (topics.DAY_BATCHES, batch.encode_chunk("run-0", 0, 3, "transfers", []), BATCH),  # another run
        (topics.STREAMED_TRANSFERS, _transfer("admit", None, 1, run_id="run-0"), b"7"),  # another run
        (
            topics.DAY_BATCHES,
            batch.chunk_message("run-1", 0, 3, "transfers", b"\xff\n", 1),
            BATCH,
        ),  # not UTF-8
        (topics.DAY_BATCHES, batch.chunk_message("run-1", 0, 3, "transfers", b"abc\n", 1), BATCH),
        (topics.DAY_BATCHES, batch.chunk_message("run-1", 0, 3, "staff_assignments", b"1\t2\n", 1), BATCH),
    ],
    ids=[
        "not-json",
        "unknown-ward",
        "wrong-day",
        "bad-digest",
        "bad-key",
        "keyless",
        "tombstone",
        "bad-batch-key",
        "outside",
        "batch-of-another-run",
        "transfer-of-another-run",
        "rows-not-copy-text",
        "transfers-row-not-a-transfer",
        "assignment-row-too-short",
    ],
)
@in_loop
async def test_a_malformed_message_is_dropped_and_the_next_one_still_routed(worker, topic, raw, key):
    async with agents.route_hospital_records.test_context() as agent:
        await put(agent, raw, topic=topic, key=key)
        assert worker.router_producer.sent == []
        await put(agent, _transfer("admit", None, _ward_ids()[0]), topic=topics.STREAMED_TRANSFERS, key=b"7")

    assert [(t, k) for t, k, *_ in worker.router_producer.sent] == [
        (topics.OCCUPANCY_CHANGES, str(_ward_ids()[0]).encode())
    ]


# --- track_ward_occupancy ------------------------------------------------------------------------


def _batch_change(ward_id, day, moves) -> OccupancyChange:
    return OccupancyChange(ward_id=ward_id, day=day, source="batch", moves=moves)


@in_loop
async def test_occupancy_changes_update_the_wards_table_entry(worker, census):
    ward = _ward_ids()[0]
    day0 = _batch_change(ward, 0, [[7, 42, 1], [8, 43, 1]])
    live = OccupancyChange(ward_id=ward, day=1, source="stream", transfer_id=9, moves=[[8, 43, -1]])
    expected, _ = rules.apply_occupancy_change(rules.new_ward(ward, services.wards()[ward].beds), day0)
    expected, _ = rules.apply_occupancy_change(expected, live)

    async with agents.track_ward_occupancy.test_context() as agent:
        await put(agent, day0.dumps(), key=str(ward).encode())
        assert occupancy_by_ward[str(ward)]["patients"] == {"7": 42, "8": 43}
        await put(agent, live.dumps(), key=str(ward).encode())

    assert occupancy_by_ward[str(ward)] == expected
    assert rules.ward_view(occupancy_by_ward[str(ward)])["patients"] == [42]


@in_loop
async def test_replaying_a_batch_change_leaves_the_table_as_after_once(worker, census):
    ward = _ward_ids()[0]
    change = _batch_change(ward, 0, [[7, 42, 1], [8, 43, 1], [7, 42, -1]])
    async with agents.track_ward_occupancy.test_context() as agent:
        await put(agent, change.dumps(), key=str(ward).encode())
        once = dict(occupancy_by_ward[str(ward)])
        await put(agent, change.dumps(), key=str(ward).encode())

    assert once["patients"] == {"8": 43} and once["day"] == 0
    assert occupancy_by_ward[str(ward)] == once


@in_loop
async def test_an_older_days_batch_after_a_newer_one_does_not_move_the_table_back(worker, census):
    ward = _ward_ids()[0]
    async with agents.track_ward_occupancy.test_context() as agent:
        await put(agent, _batch_change(ward, 0, [[7, 42, 1]]).dumps(), key=str(ward).encode())
        await put(agent, _batch_change(ward, 1, [[8, 43, 1]]).dumps(), key=str(ward).encode())
        newer = dict(occupancy_by_ward[str(ward)])
        await put(agent, _batch_change(ward, 0, [[9, 44, 1]]).dumps(), key=str(ward).encode())

    assert newer["day"] == 1 and newer["patients"] == {"7": 42, "8": 43}
    assert occupancy_by_ward[str(ward)] == newer


@in_loop
async def test_a_batch_change_that_closes_a_day_publishes_the_wards_census(worker, census):
    ward = _ward_ids()[0]
    key = str(ward).encode()
    async with agents.track_ward_occupancy.test_context() as agent:
        await put(agent, _batch_change(ward, 0, [[7, 42, 1], [8, 43, 1]]).dumps(), key=key)
        live = OccupancyChange(ward_id=ward, day=1, source="stream", transfer_id=9, moves=[[9, 44, 1]])
        await put(agent, live.dumps(), key=key)  # closes nothing
        await put(agent, _batch_change(ward, 2, [[9, 44, 1]]).dumps(), key=key)  # skips day 1: ignored

    assert census == [(key, WardCensus(day=0, ward_id=ward, occupied=2).dumps())]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        _batch_change(10_000, 0, []).dumps(),  # no such ward
        json.dumps(
            {"ward_id": 1, "day": 0, "source": "stream", "transfer_id": 1, "moves": [[1, 1, 1], [2, 2, 1]]}
        ).encode(),
    ],
    ids=["not-json", "unknown-ward", "two-moves-on-a-stream-change"],
)
@in_loop
async def test_a_malformed_occupancy_change_is_dead_lettered_and_the_agent_goes_on(
    worker, census, dead_letters, raw
):
    ward = _ward_ids()[0]
    async with agents.track_ward_occupancy.test_context() as agent:
        bad = await put(agent, raw, key=b"bad-key")
        await put(agent, _batch_change(ward, 0, [[7, 42, 1]]).dumps(), key=str(ward).encode())

    ((key, value),) = dead_letters
    letter = json.loads(value)
    assert key == b"bad-key"
    assert (letter["topic"], letter["partition"], letter["offset"]) == (
        topics.OCCUPANCY_CHANGES,
        0,
        bad.message.offset,
    )
    assert bytes.fromhex(letter["payload"]) == raw and letter["reason"]
    assert letter["kind"] == "agent_rejected"
    assert occupancy_by_ward[str(ward)]["patients"] == {"7": 42}


@pytest.mark.parametrize(
    ("raw", "key", "kind"),
    [
        (None, b"1", "tombstone"),
        (_batch_change(1, 0, []).dumps(), None, "bad_key"),
        (_batch_change(1, 0, []).dumps(), b"2", "bad_key"),
        (_batch_change(1, 0, []).dumps()[:-1] + b', "v": 3}', b"1", "version"),
        (b'{"x": "' + b"a" * 950_000 + b'"}', b"1", "oversized"),
    ],
    ids=["tombstone", "keyless", "wrong-key", "version", "oversized"],
)
@in_loop
async def test_an_occupancy_change_in_a_bad_envelope_is_dead_lettered_with_its_kind(
    worker, census, dead_letters, raw, key, kind
):
    async with agents.track_ward_occupancy.test_context() as agent:
        bad = await put(agent, raw, key=key)

    ((_, value),) = dead_letters
    letter = json.loads(value)
    assert (letter["topic"], letter["offset"], letter["kind"]) == (
        topics.OCCUPANCY_CHANGES,
        bad.message.offset,
        kind,
    )
    assert "1" not in occupancy_by_ward


# --- track_staff_assignments ---------------------------------------------------------------------

HIRE = StaffChange(staff_id=5, assignment_id=0, change="hire", role="nurse", specialty="icu")
START = StaffChange(staff_id=5, assignment_id=11, change="start", ward_id=3, shift="day", on="2020-01-02")
ASSIGNED = {
    "staff_id": 5,
    "role": "nurse",
    "specialty": "icu",
    "assignment_id": 11,
    "ward_id": 3,
    "shift": "day",
    "since": "2020-01-02",
    "ends_on": None,
    "retired_on": None,
}


@pytest.mark.parametrize(
    "changes",
    [[HIRE, START], [START, HIRE], [START, HIRE, START, HIRE], [HIRE, HIRE, START, START]],
    ids=["hire-start", "start-hire", "interleaved-duplicates", "duplicates"],
)
@in_loop
async def test_hire_and_start_in_any_order_leave_the_member_assigned(worker, changes):
    async with agents.track_staff_assignments.test_context() as agent:
        for change in changes:
            await put(agent, change.dumps(), key=b"5")

    assert assignment_by_staff["5"] == ASSIGNED
    assert rules.is_assigned(assignment_by_staff["5"])


@in_loop
async def test_a_malformed_staff_change_is_dead_lettered_and_the_agent_goes_on(worker, dead_letters):
    bad_raw = json.dumps({"staff_id": 5, "change": "promote"}).encode()
    async with agents.track_staff_assignments.test_context() as agent:
        bad = await put(agent, bad_raw, key=b"5")
        await put(agent, HIRE.dumps(), key=b"5")

    ((key, value),) = dead_letters
    letter = json.loads(value)
    assert key == b"5"
    assert (letter["topic"], letter["offset"]) == (topics.STAFF_CHANGES, bad.message.offset)
    assert bytes.fromhex(letter["payload"]) == bad_raw and "promote" in letter["reason"]
    assert letter["kind"] == "agent_rejected"
    assert assignment_by_staff["5"]["role"] == "nurse"


# --- store_records -------------------------------------------------------------------------------


async def _put_sink_messages(agent):
    """Three messages from three of the sink's topics; the events the agent got."""
    sent = [
        (topics.STREAMED_TRANSFERS, 0, b"live-1", b"7"),
        (topics.DAY_BATCHES, 2, b"chunk-1", b"hospital-batch"),
        (topics.WARD_CENSUS, 1, b"census-1", b"3"),
    ]
    events = []
    for topic, partition, value, key in sent:
        agent._get_strtopic = lambda channel, topic=topic: topic
        events.append(await agent.put(value, key=key, partition=partition, timestamp=1577867400.0))
    return events


@in_loop
async def test_the_sink_agent_stores_incoming_messages_then_acknowledges_them(worker):
    sink = worker.sink
    sink.gate = asyncio.Event()  # the transaction has not committed yet
    async with agents.store_records.test_context() as agent:
        events = await _put_sink_messages(agent)
        await eventually(lambda: sink.buffers)  # store was called ...
        await asyncio.sleep(0.05)  # ... and blocks: the agent had time to (wrongly) ack
        assert [e.message.acked for e in events] == [False, False, False]
        assert agents._offsets_seen == {}

        sink.gate.set()  # committed
        await eventually(lambda: all(e.message.acked for e in events))

    assert sink.buffers == [
        [
            Incoming(topics.STREAMED_TRANSFERS, 0, 0, b"live-1", b"7", 1577867400.0),
            Incoming(topics.DAY_BATCHES, 2, 1, b"chunk-1", b"hospital-batch", 1577867400.0),
            Incoming(topics.WARD_CENSUS, 1, 2, b"census-1", b"3", 1577867400.0),
        ]
    ]
    assert agents._offsets_seen == {
        TP(topics.STREAMED_TRANSFERS, 0): 0,
        TP(topics.DAY_BATCHES, 2): 1,
        TP(topics.WARD_CENSUS, 1): 2,
    }


@in_loop
async def test_a_database_error_exits_the_worker_with_nothing_acknowledged(worker, monkeypatch):
    exits: list[tuple[int, str]] = []

    def exit_now(code, reason):
        exits.append((code, reason))
        raise WorkerExited(code)

    monkeypatch.setattr(agents, "exit_now", exit_now)
    worker.sink.failure = DatabaseError("connection refused")
    with pytest.raises(WorkerExited):  # noqa: PT012 (the agent exits while the test drives it)
        async with agents.store_records.test_context() as agent:
            events = await _put_sink_messages(agent)
            await eventually(lambda: exits)
            await asyncio.sleep(0.05)

    assert len(worker.sink.buffers) == 1 and len(worker.sink.buffers[0]) == 3
    assert exits == [(1, "stopping the worker: connection refused")]
    assert [e.message.acked for e in events] == [False, False, False]
    assert agents._offsets_seen == {}
