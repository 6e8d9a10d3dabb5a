"""The producer side: runs the simulator on a wall-clock schedule and sends its records.

Simulated day ``k`` (counted from the day the worker resumed at) owns a window of
``900 / speed`` seconds; its five stream slots start every ``180 / speed`` seconds of it and
each sends three of the day's transfers, and its batch is due when the window ends. Slots
are computed from one anchor, so a nine-day run at speed 1 does not drift. At speed ``max``
everything is due at once and only backpressure (days produced but not yet stored) paces it.

PostgreSQL is the system of record: a (re)started generator resumes after the last day that
is completely stored, from that day's checkpoint. Anything it sends again is skipped by the
sink's chunk ledger and merges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from typing import Any

from hospital_stream import db, failpoints, sim
from hospital_stream.errors import DatabaseError
from hospital_stream.metrics import METRICS
from hospital_stream.settings import STREAM_SLOT_SECONDS, Settings
from hospital_stream.stream import rules
from hospital_stream.wire.batch import BATCH_KEY, encode_day
from hospital_stream.wire.messages import streamed_transfer_from_row
from hospital_stream.wire.roles import TopicRole

logger = logging.getLogger(__name__)

SECONDS_PER_SLOT = STREAM_SLOT_SECONDS
SLOTS_PER_DAY = sim.STREAM_SLOTS_PER_DAY
SECONDS_PER_DAY = SECONDS_PER_SLOT * SLOTS_PER_DAY
MIN_TICK_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Which stream slots and day batches are due, ``elapsed`` seconds after the anchor."""

    speed: float | None

    def slots_due(self, elapsed: float) -> float:
        """Stream slots due so far (slot n is due at n * slot length)."""
        if self.speed is None:
            return math.inf
        return math.floor(elapsed / (SECONDS_PER_SLOT / self.speed)) + 1

    def days_due(self, elapsed: float) -> float:
        """Day batches due so far (day k's is due when its window ends)."""
        if self.speed is None:
            return math.inf
        return math.floor(elapsed / (SECONDS_PER_DAY / self.speed))

    def tick_seconds(self) -> float:
        """How often the timers look at the schedule."""
        if self.speed is None:
            return 1.0
        # a quarter slot, but not so often that a tick's own work outlasts it
        return max(MIN_TICK_SECONDS, min(1.0, SECONDS_PER_SLOT / self.speed / 4))


class Generator:
    """Holds the simulation and the schedule; the agents' timers call its two steps."""

    def __init__(self, settings: Settings, send: Any) -> None:
        self.settings = settings
        self.config = sim.HospitalConfig.from_settings(settings)
        self.schedule = Schedule(settings.speed)
        #: ``await send(kind, key, value)`` -> an awaitable that resolves once the broker has the
        #: message, on the topic of that role
        self.send = send
        self.unconfirmed: list[Any] = []
        until = settings.run_until_day
        self.end_day = settings.schedule_days if until is None else min(settings.schedule_days, until)
        self.lock = asyncio.Lock()
        self.hospital: sim.Hospital | None = None
        self.run_id = ""
        self.state: sim.HospitalState | None = None
        self.first_day = 0
        self.anchor = 0.0
        self.slots_sent = 0  # counted from first_day's slot 0
        self.days_sent = 0
        self.current: sim.DayRecords | None = None
        self.stored_through = -1
        self._last_outage_log = -math.inf
        self._rebalanced = False
        self.held = False
        self.stopped = False

    async def resume(self) -> None:
        """Load the run and the checkpoint after the last complete day from PostgreSQL."""
        url = self.settings.database_url
        run_id, last_day, checkpoint = await asyncio.to_thread(self._read_resume_point, url)
        self.run_id = run_id
        if self.hospital is None:
            self.hospital = await asyncio.to_thread(sim.Hospital, self.config)
        resumed = sim.decode_checkpoint(checkpoint) if checkpoint else sim.HospitalState()
        if last_day >= 0:
            wards = [ward.ward_id for ward in self.config.wards]
            occupancy, staff = rules.snapshot_changes(resumed, last_day, wards)
            for ward_change in occupancy:
                await self._emit(TopicRole.OCCUPANCY, ward_change.key(), ward_change)
            for staff_change in staff:
                await self._emit(TopicRole.STAFF, staff_change.key(), staff_change)
            if not await self._confirm():
                return
        self.state = resumed  # only now: a failed snapshot is sent again on the next tick
        self.first_day = last_day + 1
        self.stored_through = last_day
        self.current = None
        self.slots_sent = self.days_sent = 0
        self.anchor = time.monotonic()
        logger.info(
            "generator resumes at simulated day %d (%s), run %s, speed %s",
            self.first_day,
            self.config.date_of(self.first_day),
            run_id,
            self.settings.speed or "max",
        )

    def _read_resume_point(self, url: str) -> tuple[str, int, bytes | None]:
        with db.connect(url) as conn:
            db.require_schema(conn)
            run_id = db.ensure_run(conn, uuid.uuid4().hex, self.config.to_json())
            last_day = db.last_complete_day(conn)
            checkpoint = db.checkpoint_after(conn, last_day) if last_day >= 0 else None
            return run_id, last_day, checkpoint

    async def step_down(self) -> None:
        """Forget the position in the run (not the hospital): the next step resumes from PostgreSQL."""
        async with self.lock:
            self._forget("this worker does not lead")

    def rebalanced(self) -> None:
        """The consumer group's partitions were assigned again: the next step resumes from
        PostgreSQL's last complete day, even on a worker that led throughout.

        A rebalance drops messages in flight: Faust skips, and acknowledges, every event it
        fetched before the new assignment, even on a ``noack`` stream, so a chunk routed, a ward
        change or a census can vanish on partitions that stayed with this worker. Their day then
        never completes, and a generator that goes on from its own position never sends it
        again. Sent again from PostgreSQL (snapshot included), it is stored whole."""
        self._rebalanced = True

    async def stop(self) -> int | None:
        """Start no step again, and wait for the one under way (its sends confirmed): the worker
        stops, and its producers stop after this. The last day sent, or None if not generating."""
        self.stopped = True
        async with self.lock:
            self.held = False
            return self.first_day + self.days_sent - 1 if self.state is not None else None

    def _forget(self, reason: str) -> None:
        if self.state is not None:
            logger.info("generator stops after day %d: %s", self.first_day + self.days_sent - 1, reason)
            self.state = None
        self.held = False

    async def stream_step(self) -> None:
        """Send the live transfers of every stream slot that is due."""
        async with self.lock:
            if not await self._resumed():
                return
            due = self.schedule.slots_due(time.monotonic() - self.anchor)
            budget = self._budget()
            while (
                self.slots_sent < due and budget() and await self._start_day(self.slots_sent // SLOTS_PER_DAY)
            ):
                await self._send_slot()
            await self._confirm()

    async def batch_step(self) -> None:
        """Send the batch of every day whose window has ended."""
        async with self.lock:
            if not await self._resumed():
                return
            due = self.schedule.days_due(time.monotonic() - self.anchor)
            budget = self._budget()
            while self.days_sent < due and budget() and await self._start_day(self.days_sent):
                while self.slots_sent < (self.days_sent + 1) * SLOTS_PER_DAY:
                    await self._send_slot()  # a day's live transfers always precede its batch
                await self._send_batch()
            await self._confirm()

    async def _resumed(self) -> bool:
        """Resume on first use and after a rebalance; False (try again next tick) while
        PostgreSQL is unreachable; False for good once stopped."""
        if self.stopped:
            return False
        if self._rebalanced:
            self._rebalanced = False
            self._forget("the partitions were assigned again")
        if self.state is None:
            try:
                await self.resume()
            except DatabaseError as exc:
                self._database_unavailable(exc)
                return False
        return self.state is not None

    async def _emit(self, role: TopicRole, key: str, value: Any) -> None:
        with METRICS.timed("produce"):
            self.unconfirmed.append(await self.send(role, key, value))

    async def _confirm(self) -> bool:
        """Wait until the broker has everything sent so far. When a send failed, start again
        from PostgreSQL's last complete day on the next tick: what was sent after it comes
        again, and the sink and the tables take repeats as no-ops."""
        pending, self.unconfirmed = self.unconfirmed, []
        with METRICS.timed("produce", 0):
            results = await asyncio.gather(*pending, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return True
        logger.warning(
            "%d of %d messages did not reach the broker (%r); resuming from PostgreSQL's last complete day",
            len(failed),
            len(results),
            failed[0],
        )
        self.state = None
        return False

    def _database_unavailable(self, exc: DatabaseError) -> None:
        now = time.monotonic()
        if now - self._last_outage_log > 10:
            logger.warning("generator waits for PostgreSQL: %s", exc)
            self._last_outage_log = now

    def _budget(self) -> Any:
        """A step stops starting new work after most of one tick, so timers never overlap
        (a late slot or day is simply caught up on the next tick)."""
        deadline = time.monotonic() + self.schedule.tick_seconds() * 0.7
        return lambda: time.monotonic() < deadline

    async def _start_day(self, index: int) -> bool:
        """Make sure day ``first_day + index`` is simulated; False while it may not start yet."""
        day = self.first_day + index
        if self.current is not None and self.current.day == day:
            return True
        if index != self.days_sent:  # the day before has not sent its batch yet
            return False
        if day >= self.end_day:
            return False
        #: held back until the sink stores more: work the stall watchdog waits on
        self.held = not await self._room_for(day)
        if self.held:
            return False
        assert self.hospital is not None and self.state is not None
        with METRICS.timed("generate", 0):
            self.current = await asyncio.to_thread(self.hospital.simulate_day, self.state, day)
        return True

    async def _room_for(self, day: int) -> bool:
        """Backpressure: at most ``max_unsunk_days`` days sent but not yet stored."""
        limit = self.settings.max_unsunk_days
        deadline = time.monotonic() + self.schedule.tick_seconds() * 0.5
        while day - self.stored_through > limit:
            try:
                self.stored_through = await asyncio.to_thread(self._stored_through)
            except DatabaseError as exc:
                self._database_unavailable(exc)
                return False
            if day - self.stored_through <= limit or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        return day - self.stored_through <= limit

    def _stored_through(self) -> int:
        with db.connect(self.settings.database_url) as conn:
            return db.last_complete_day(conn)

    def _lateness(self, kind: str, slot: int) -> None:
        """How late a slot or a batch goes out after its wall-clock time, the start of stream
        slot ``slot`` counted from the anchor (nothing is late at speed max)."""
        if self.schedule.speed is not None:
            due = self.anchor + slot * SECONDS_PER_SLOT / self.schedule.speed
            METRICS.slot_lag.labels(kind).observe(max(0.0, time.monotonic() - due))

    async def _send_slot(self) -> None:
        assert self.current is not None
        self._lateness("slot", self.slots_sent)
        for row in self.current.streamed[self.slots_sent % SLOTS_PER_DAY]:
            transfer = streamed_transfer_from_row(self.run_id, row)
            await self._emit(TopicRole.STREAMED, transfer.key(), transfer.dumps())
        self.slots_sent += 1

    async def _send_batch(self) -> None:
        records = self.current
        assert records is not None
        self._lateness("batch", (self.days_sent + 1) * SLOTS_PER_DAY)
        with METRICS.timed("generate"):  # one day: simulate_day counted above, with no message
            messages = await asyncio.to_thread(encode_day, self.run_id, records)
        for message in messages:
            if message is messages[-1]:
                failpoints.hit("generator.before_closing", records.day)
            elif records.day == 0:
                failpoints.hit("generator.day0_chunks", records.day)
            await self._emit(TopicRole.BATCH, BATCH_KEY, message)
        METRICS.generated_rows.inc(sum(records.row_counts().values()))
        METRICS.produced_bytes.inc(sum(map(len, messages)))
        self.state = records.state
        self.days_sent += 1
        logger.info(
            "sent day %d (%s): %d messages, %d rows",
            records.day,
            records.date,
            len(messages),
            sum(records.row_counts().values()),
        )
