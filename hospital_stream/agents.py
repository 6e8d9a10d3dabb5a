"""Agents and timers: generate -> topics -> state tables and the PostgreSQL sink.

Dataflow::

    timers (leader only)   stream_live_transfers ──> hospital.transfers.streamed ─┐
                           produce_daily_batch  ──> hospital.records.batch ──────┤
                                                                                  │
    route_hospital_records ──> hospital.occupancy.changes ──> track_ward_occupancy ──> occupancy_by_ward
                          └──> hospital.staff.changes ─────> track_staff_assignments ─> assignment_by_staff
    track_ward_occupancy ──> hospital.census.daily ─┐
    store_records <── streamed + batch + census ────┴──> PostgreSQL (one transaction per buffer)

    mark_broker_epoch / watch_for_broker_loss: a worker whose broker lost its messages exits
    (BrokerLost.exit_code) so that it starts again from PostgreSQL's last complete day.
    watch_for_stalls: a worker whose sink stores nothing while it has work exits
    (WorkerStalled.exit_code) for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from typing import Any, NoReturn

from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from faust.types import TP

from hospital_stream import failpoints, services, topics
from hospital_stream.app import app, settings
from hospital_stream.errors import BrokerLost, DatabaseError, InvalidMessage, SinkStopped
from hospital_stream.metrics import METRICS
from hospital_stream.sink import Incoming
from hospital_stream.stream import rules
from hospital_stream.stream.generator import Schedule
from hospital_stream.tables import assignment_by_staff, occupancy_by_ward
from hospital_stream.wire.batch import batch_table, parse_batch_message
from hospital_stream.wire.dead_letters import AGENT_KINDS, DeadLetterKind, encode_dead_letter
from hospital_stream.wire.fields import check_envelope, check_key
from hospital_stream.wire.messages import (
    Message,
    WardCensus,
    check_in_schedule,
    parse_occupancy_change,
    parse_staff_change,
    parse_streamed_transfer,
)

logger = logging.getLogger(__name__)

#: how often the generator's timers tick: a pure function of the speed, known at import
TICK_SECONDS = Schedule(settings.speed).tick_seconds()


@app.timer(interval=TICK_SECONDS)
async def stream_live_transfers() -> None:
    """Every 180 s / speed: three live transfers of the current simulated day."""
    if await _leading():
        await (await services.started()).generator.stream_step()


@app.timer(interval=TICK_SECONDS)
async def produce_daily_batch() -> None:
    """Every 900 s / speed: the batch holding one whole simulated day."""
    if await _leading():
        await (await services.started()).generator.batch_step()


async def _leading() -> bool:
    """Whether this worker generates: only the leader does. A worker that is not the leader at
    a tick (another worker leads, or a rebalance is under way) lets go of its position in the
    run, so that when it leads again it resumes from PostgreSQL's last complete day, not from
    where it stopped (the days in between were generated, and maybe stored, by another worker)."""
    worker = await services.started()
    await worker.sink.ready.wait()
    if app.is_leader():
        return True
    await worker.generator.step_down()
    return False


# mypy matches no async def against mode's SignalHandlerT union, typed as it asks or not
@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def note_partitions_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
    """A rebalance gave this worker its partitions (a failpoint for the fault tests)."""
    failpoints.hit("rebalance.assigned")


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def note_partitions_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
    """A rebalance took this worker's partitions (a failpoint for the fault tests)."""
    failpoints.hit("rebalance.revoked")


@app.on_partitions_assigned.connect
async def resume_generation_after_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Every rebalance makes the generator resume from PostgreSQL's last complete day at its next
    step (see ``Generator.rebalanced``): what the rebalance dropped is sent again."""
    worker = services.current()
    if worker is not None:
        worker.generator.rebalanced()


@app.agent(topics.sink_input)
async def store_records(stream: Any) -> None:
    """Buffer streamed, batch and census messages; write each buffer in one transaction.

    Acknowledgements are manual (``noack``): a buffer is acknowledged only after its
    transaction committed, so a crash, a shutdown or an error never lets Kafka commit an
    offset whose message is not stored. (Faust's ``take_events`` acknowledges its buffer in a
    ``finally`` block, even when the agent fails, which is why it is not used here.)
    """
    manual = stream.noack()
    worker = await services.started()
    sink, stall_watch = worker.sink, worker.stall_watch
    async for events in buffered(manual.events(), settings.sink_buffer_messages, settings.sink_flush_seconds):
        messages = [
            Incoming(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.value,
                e.message.key,
                e.message.timestamp,
            )
            for e in events
        ]
        try:
            with stall_watch.storing():
                result = await sink.store(messages)
        except SinkStopped:  # the worker stops: the buffer is read again on the next start
            return
        except DatabaseError as exc:  # nothing of the buffer is acknowledged: it is read again
            exit_now(1, f"stopping the worker: {exc}")
        for event in events:
            await manual.ack(event)
            tp = TP(event.message.topic, event.message.partition)
            _offsets_seen[tp] = max(_offsets_seen.get(tp, -1), event.message.offset)
        logger.debug("stored %d messages: %s", len(messages), result)


async def buffered(events: Any, size: int, within: float) -> Any:
    """Lists of up to ``size`` items from ``events``, each yielded at most ``within`` seconds
    after its first item arrived."""
    iterator = events.__aiter__()
    pending: asyncio.Future[Any] | None = None
    buffer: list[Any] = []
    deadline = 0.0
    loop = asyncio.get_running_loop()
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            timeout = max(0.0, deadline - loop.time()) if buffer else None
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if done:
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    break
                finally:
                    pending = None
                if not buffer:
                    deadline = loop.time() + within
                buffer.append(item)
                if len(buffer) < size:
                    continue
            if buffer:
                yield buffer
                buffer = []
        if buffer:
            yield buffer
    finally:
        if pending is not None:
            pending.cancel()


@app.agent(topics.hospital_records)
async def route_hospital_records(stream: Any) -> None:
    """Turn live transfers and batch chunks into per-ward and per-staff changes."""
    async for event in stream.events():
        with METRICS.timed("route"):
            await _route(event)


#: the batch tables the routing agent turns into ward and staff changes
ROUTED_TABLES = frozenset(
    {"transfers", "staff", "staff_assignments", "staff_assignment_ends", "staff_retirements"}
)


async def _route(event: Any) -> None:
    """Send a message's changes; return once the broker has them all (see router_producer)."""
    for ack in await _changes(event):
        await ack


async def _changes(event: Any) -> list[Any]:
    """Send the ward and staff changes of one message; the awaitables of their acknowledgements."""
    try:
        value = check_envelope(event.message.key, event.message.value)
        if event.message.topic == topics.STREAMED_TRANSFERS:
            transfer = parse_streamed_transfer(value, services.context())
            check_key(event.message.key, transfer.key())
            await _check_run(transfer.run_id)
            # the transfer's own send time travels on, so the table agent can tell its latency
            changes: list[tuple[Any, Message]] = [
                (topics.occupancy_changes, change)
                for change in rules.occupancy_changes_for_transfer(transfer)
            ]
            return await _send_changes(changes, event.message.timestamp)
        if batch_table(value) not in ROUTED_TABLES:
            return []  # the bulk (patients, clinical records): the sink's alone, and it validates them
        batch = parse_batch_message(value)
        check_key(event.message.key, batch.key())
        check_in_schedule(batch.header.day, services.context().schedule_days)
        await _check_run(batch.header.run_id)
        rows = batch.rows()  # COPY text as PostgreSQL reads it, or InvalidMessage
        table = batch.header.table
        routed = rules.changes_for_chunk(table, batch.header.day, services.wards(), rows)
    except InvalidMessage:
        return []  # the sink dead-letters it, with the reason (PostgreSQL refuses its bad rows)
    topic = topics.occupancy_changes if table == "transfers" else topics.staff_changes
    return await _send_changes([(topic, change) for change in routed], None)


async def _check_run(run_id: str) -> None:
    """A message of another run than the database's moves no ward or staff member (the sink
    dead-letters it); while the run is not known, the sink's check is the only one."""
    stored = await (await services.started()).sink.stored_run()
    if stored is not None and run_id != stored:
        raise InvalidMessage(f"message of run {run_id[:40]!r}, database holds run {stored!r}")


async def _send_changes(changes: list[tuple[Any, Message]], timestamp: float | None) -> list[Any]:
    producer = (await services.started()).router_producer
    return [
        await producer.send(
            topic.get_topic_name(), change.key().encode(), change.dumps(), None, timestamp, None
        )
        for topic, change in changes
    ]


@app.agent(topics.occupancy_changes)
async def track_ward_occupancy(changes: Any) -> None:
    """Keep ``occupancy_by_ward``; publish each ward's census when its day closes."""
    async for event in changes.events():
        try:
            change = parse_occupancy_change(
                check_envelope(event.message.key, event.message.value), services.context().ward_ids
            )
            check_key(event.message.key, change.key())
            check_in_schedule(change.day, services.context().schedule_days)
        except InvalidMessage as exc:
            await _dead_letter(event, exc)
            continue
        with METRICS.timed("tables"):
            key = change.key()
            ward = occupancy_by_ward.get(key)
            if ward is None:
                ward = rules.new_ward(change.ward_id, services.wards()[change.ward_id].beds)
            updated, closed_day = rules.apply_occupancy_change(ward, change)
            if updated is not ward:
                occupancy_by_ward[key] = updated
        if change.source == "stream" and event.message.timestamp:
            METRICS.latency.labels("table").observe(time.time() - event.message.timestamp)
        if closed_day:
            census = WardCensus(day=change.day, ward_id=change.ward_id, occupied=len(updated["patients"]))
            await topics.ward_census.send(key=key.encode(), value=census.dumps())


@app.agent(topics.staff_changes)
async def track_staff_assignments(changes: Any) -> None:
    """Keep ``assignment_by_staff``: who works where, from hires, assignments and retirements."""
    async for event in changes.events():
        try:
            staff = parse_staff_change(check_envelope(event.message.key, event.message.value))
            check_key(event.message.key, staff.key())
        except InvalidMessage as exc:
            await _dead_letter(event, exc)
            continue
        with METRICS.timed("tables"):
            key = staff.key()
            current = assignment_by_staff.get(key)
            updated = rules.apply_staff_change(current, staff)
            if updated != current:
                assignment_by_staff[key] = updated


async def _dead_letter(event: Any, error: InvalidMessage) -> None:
    """Hand a message this agent cannot use to the sink, which stores it in ``dead_letters``."""
    message = event.message
    logger.warning(  # ids only: the reason may quote the message's values; it is kept in dead_letters
        "dead letter from %s[%d]@%d", message.topic, message.partition, message.offset
    )
    kind = DeadLetterKind(error.kind)
    value = encode_dead_letter(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        str(error),
        message.value,
        kind if kind in AGENT_KINDS else DeadLetterKind.AGENT_REJECTED,
    )
    await topics.dead_letters.send(key=message.key or b"", value=value)


# --- a broker that lost its messages ------------------------------------------------------------

BROKER_WATCH_SECONDS = 5.0
#: the highest offset stored per partition the sink consumed, plus this worker's epoch marker
_offsets_seen: dict[TP, int] = {}
EPOCH_MARKER = TP(topics.BROKER_EPOCH, 0)


@app.task
async def mark_broker_epoch() -> None:
    """Leave this worker's marker in the epoch topic and remember its offset."""
    marker = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    sent = await topics.broker_epoch.send(key=b"epoch", value=json.dumps(marker).encode())
    _offsets_seen[EPOCH_MARKER] = (await sent).offset


@app.timer(interval=BROKER_WATCH_SECONDS)
async def watch_for_broker_loss() -> None:
    """Exit at once when the broker no longer holds a message this worker saw.

    An embedded broker that restarted keeps nothing (topics, offsets, changelogs), and a
    deleted topic takes its messages along: this worker's consumer positions and tables then
    describe a log that no longer exists. Starting again is the one clean way on: the
    generator resumes from PostgreSQL's last complete day and resets the tables from there.
    """
    if EPOCH_MARKER not in _offsets_seen:
        return
    seen = dict(_offsets_seen)
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*seen), BROKER_WATCH_SECONDS * 2)
    except UnknownTopicOrPartitionError:
        ends = {}
    except (TimeoutError, KafkaError) as exc:  # unreachable right now: look again later
        logger.debug("broker watch: no answer (%r)", exc)
        return
    lost = sorted(
        f"{tp.topic}[{tp.partition}] ends at {ends.get(tp, 0)}, we saw offset {offset}"
        for tp, offset in seen.items()
        if ends.get(tp, 0) <= offset
    )
    if not lost:
        return
    exit_now(
        BrokerLost.exit_code,
        "the broker lost its messages (restarted empty, or topics deleted): "
        + "; ".join(lost[:3])
        + f"; exiting with status {BrokerLost.exit_code} to start again from PostgreSQL's last complete day",
    )


# --- a worker that stalls ------------------------------------------------------------------------

#: how often the stall watchdog looks: a tenth of the limit, between 0.5 s and 5 s
STALL_WATCH_SECONDS = max(0.5, min(5.0, settings.stall_limit / 10))


@app.timer(interval=STALL_WATCH_SECONDS)
async def watch_for_stalls() -> None:
    """Exit at once (``WorkerStalled.exit_code``) when the sink has stored nothing for the stall
    limit while it had work: a bare ``faust worker`` or a compose replica is started again by
    its supervisor or restart policy, and resumes from PostgreSQL's last complete day."""
    worker = services.current()
    if worker is None or worker.should_stop:  # a stopping worker's sink winds down on its own
        return
    stall = await worker.stall_watch.check(worker.generator.held)
    if stall is not None:
        exit_now(stall.exit_code, str(stall))


def exit_now(code: int, reason: str) -> NoReturn:
    """Log ``reason`` and end the process at once, without a shutdown: nothing unacknowledged
    is committed (it is read again), and a worker whose broker or database is gone could hang
    in an orderly shutdown."""
    logger.critical("%s", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
