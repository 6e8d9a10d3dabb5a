"""The buffered PostgreSQL sink: one transaction per buffer of messages, written with COPY.

Effectively-once on an at-least-once pipeline: every chunk of a day's batch is entered in
``ingested_chunks`` in the same transaction that stores its rows, so a replayed chunk is
skipped; streamed transfers and daily manifests are merged on their natural keys. The agent
acknowledges its messages only after :meth:`PostgresSink.store` returns, i.e. after the commit.

A chunk whose rows PostgreSQL rejects is retried in halves inside savepoints down to single
rows, so only the bad rows go to ``dead_letters`` (with topic, partition, offset, row number,
kind, day, reason and bytes) and a chunk with one bad row costs a few dozen small COPYs, not thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from mode import Service
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from hospital_stream import db, failpoints
from hospital_stream.errors import DatabaseError, InvalidMessage, SinkStopped
from hospital_stream.metrics import METRICS
from hospital_stream.model import HospitalConfig
from hospital_stream.schema import TRANSFER_COLUMNS, TableSpec
from hospital_stream.settings import Settings
from hospital_stream.wire.batch import BatchHeader, BatchMessage, parse_batch_message
from hospital_stream.wire.copy_text import encode_copy_rows
from hospital_stream.wire.dead_letters import AGENT_KINDS, DeadLetterKind
from hospital_stream.wire.fields import (
    check_envelope,
    check_key,
    check_version,
    json_object,
    require,
    require_count,
)
from hospital_stream.wire.messages import (
    StreamedTransfer,
    WardCensus,
    check_in_schedule,
    parse_streamed_transfer,
    parse_ward_census,
    streamed_transfer_from_row,
)
from hospital_stream.wire.roles import TopicRole

logger = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
#: how long a stopping sink lets the buffer under way commit before it closes its pool
STOP_WAIT_SECONDS = 10.0
#: what a bad row (or the same key twice in one chunk) makes PostgreSQL raise
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.CardinalityViolation)


@dataclasses.dataclass(frozen=True)
class Incoming:
    """One consumed message, as raw bytes with where it came from."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: float | None = None  # Unix time the producer sent it


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message, or one row of a batch chunk, that could not be stored: a row of ``dead_letters``."""

    source: Incoming
    kind: DeadLetterKind
    reason: str
    sim_day: int | None = None  # the simulated day, when the message parsed far enough to tell
    row_number: int = 0
    payload: bytes | None = None  # default: the whole message
    table: str | None = None  # for a row of a batch chunk
    payload_bytes: int | None = None  # the payload's size before it was capped; default: its own


@dataclasses.dataclass
class StoreResult:
    rows: int = 0
    chunks: int = 0
    replayed_chunks: int = 0
    transfers_streamed: int = 0
    days_closed: int = 0
    dead_letters: int = 0


#: A day is complete once every chunk is stored, every ward's end-of-day census with it, and
#: every transfer it streamed live: the live copies travel on other partitions than the batch
#: and may be read after it, and a run that ends at its last complete day must hold them.
#: Every open day is looked at each time: a day whose last pieces were committed by two
#: concurrent transactions (two workers) is completed by the next one, or by the timer.
COMPLETE_DAYS = """
    UPDATE sim_days d SET completed_at = now()
    WHERE completed_at IS NULL
      AND chunks = (SELECT count(*) FROM ingested_chunks c WHERE c.sim_day = d.sim_day)
      AND (SELECT count(*) FROM ward_census w WHERE w.sim_day = d.sim_day)
          = (SELECT count(*) FROM wards)
      AND (SELECT count(*) FROM transfers t
           WHERE t.sim_day = d.sim_day AND t.seen_in_stream AND t.seen_in_batch) >= d.streamed
"""


#: whether the ledger holds as many rows of day 0's patients as the catchment has (%s)
DAY_ZERO_PATIENTS_STORED = """
    SELECT coalesce(sum(row_count), 0) = %s FROM ingested_chunks WHERE sim_day = 0 AND table_name = 'patients'
"""


class RowsMissing(Exception):
    """An update chunk named rows that are not in the database."""


class ChunkOutOfOrder(Exception):
    """A chunk names rows of chunks that are not stored yet (its message's reason)."""


#: Whether every chunk before (day, seq) is stored: the day's earlier chunks and every chunk of
#: every earlier day (each earlier day closed, with as many chunks in the ledger as it has).
PREDECESSORS_STORED = """
    SELECT (SELECT count(*) FROM ingested_chunks WHERE sim_day = %(day)s AND seq < %(seq)s) = %(seq)s
       AND (SELECT count(*) FROM sim_days WHERE sim_day < %(day)s) = %(day)s
       AND NOT EXISTS (
           SELECT 1 FROM sim_days d WHERE d.sim_day < %(day)s
              AND d.chunks <> (SELECT count(*) FROM ingested_chunks c WHERE c.sim_day = d.sim_day))
"""


class PostgresSink(Service):
    """Owns the connection pool; stores buffers of consumed messages."""

    def __init__(self, settings: Settings, topics: dict[str, TopicRole], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.context = HospitalConfig.from_settings(settings).context(settings.schedule_days)
        #: topic name -> what it carries
        self.topics = topics
        #: the topics whose messages agents send through the dead-letter topic
        self.agent_topics = frozenset(
            role.topic(settings.topic_prefix) for role in (TopicRole.OCCUPANCY, TopicRole.STAFF)
        )
        self.pool = AsyncConnectionPool(
            settings.database_url,
            open=False,
            min_size=1,
            max_size=4,
            kwargs={"connect_timeout": 5},
            # a connection is waited for at most this long per attempt, so the outage limit
            # (HOSPITAL_DB_OUTAGE_SECONDS) is kept to within a few seconds
            timeout=5.0,
            name="hospital-stream",
        )
        self.ready = asyncio.Event()
        self._stored_run: str | None = None
        self._idle = asyncio.Event()  # no buffer under way
        self._idle.set()

    async def on_start(self) -> None:
        await asyncio.to_thread(db.migrate, self.settings.database_url)
        await self.pool.open(wait=True, timeout=30)
        self.ready.set()

    async def on_stop(self) -> None:
        """Let the buffer under way commit (one transaction, about a second), then close the
        pool: a buffer that does not commit by then is rolled back, unacknowledged."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOP_WAIT_SECONDS)
        await self.pool.close()

    @Service.timer(5.0)
    async def _complete_open_days(self) -> None:
        if not self.ready.is_set():
            return
        try:
            async with self.pool.connection() as conn:
                await conn.execute(COMPLETE_DAYS)
        except psycopg.OperationalError as exc:
            logger.debug("could not look at open days: %s", exc)

    async def store(self, messages: Sequence[Incoming]) -> StoreResult:
        """Store a buffer in one transaction, retrying while PostgreSQL is unreachable;
        :class:`SinkStopped` once the sink is stopping (the buffer is not stored)."""
        await self.ready.wait()
        delay, started = 0.5, time.monotonic()
        while True:
            if self.should_stop:
                raise SinkStopped(f"the sink stopped: {len(messages)} messages left to the next start")
            try:
                flush_started = time.perf_counter()
                self._idle.clear()
                try:
                    result = await self._store_once(messages)
                finally:
                    self._idle.set()
                break
            except psycopg.OperationalError as exc:
                waited = time.monotonic() - started
                if waited > self.settings.db_outage_seconds:
                    raise DatabaseError(
                        f"PostgreSQL unreachable for {waited:.0f} s (limit "
                        f"HOSPITAL_DB_OUTAGE_SECONDS={self.settings.db_outage_seconds:.0f}): {exc}"
                    ) from exc
                logger.warning(
                    "PostgreSQL unavailable (%s); retrying %d messages in %.1f s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    len(messages),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
        now, seconds = time.time(), time.perf_counter() - flush_started
        for message in messages:
            if message.timestamp and self.topics.get(message.topic) == TopicRole.STREAMED:
                METRICS.latency.labels("database").observe(now - message.timestamp)
        METRICS.record_flush(  # the attempt that committed
            seconds,
            len(messages),
            result.rows,
            result.transfers_streamed,
            result.dead_letters,
            message_bytes=sum(len(m.value or b"") for m in messages),
        )
        return result

    async def _store_once(self, messages: Sequence[Incoming]) -> StoreResult:
        result = StoreResult()
        dead: list[DeadLetter] = []
        streamed: list[tuple[Incoming, StreamedTransfer]] = []
        batches: list[tuple[Incoming, BatchMessage]] = []
        census: list[tuple[Incoming, WardCensus]] = []
        async with self.pool.connection() as conn, conn.transaction():
            run_id = await self._run_id(conn)
            for message in messages:
                day: int | None = None  # known once the message parsed (a run mismatch has one)
                try:
                    role = self.topics[message.topic]
                    if role == TopicRole.DEAD_LETTERS:
                        dead.append(self._dead_letter_of(message))
                        continue
                    value = check_envelope(message.key, message.value)
                    if role == TopicRole.STREAMED:
                        transfer = parse_streamed_transfer(value, self.context)
                        day = transfer.day
                        _check_run(transfer.run_id, run_id)
                        check_key(message.key, transfer.key())
                        streamed.append((message, transfer))
                    elif role == TopicRole.BATCH:
                        batch = parse_batch_message(value)
                        day = batch.header.day
                        _check_run(batch.header.run_id, run_id)
                        check_key(message.key, batch.key())
                        self._check_batch_day(batch.header)
                        batches.append((message, batch))
                    elif role == TopicRole.CENSUS:
                        ward_census = parse_ward_census(value, self.context)
                        day = ward_census.day
                        check_key(message.key, ward_census.key())
                        census.append((message, ward_census))
                except InvalidMessage as exc:
                    dead.append(DeadLetter(message, DeadLetterKind(exc.kind), str(exc), day))
            complete = await _complete_days(
                conn,
                {t.day for _, t in streamed}
                | {b.header.day for _, b in batches}
                | {c.day for _, c in census},
            )
            transfers: dict[int, StreamedTransfer] = {}  # one of each: merged once
            for message, transfer in streamed:  # a complete day takes copies of what it stored only
                if transfer.day not in complete:
                    transfers[transfer.transfer_id] = transfer
                elif not await _is_stored_stream_copy(conn, transfer):
                    what = f"streamed transfer {transfer.transfer_id}"
                    dead.append(_day_closed(message, transfer.day, what))
            if transfers:
                await self._merge_streamed(conn, list(transfers.values()))
                result.transfers_streamed += len(transfers)
            days: set[int] = set()
            closed: set[int] = set()
            for message, batch in batches:
                try:
                    if batch.header.kind == "day":
                        stored = await self._close_day(conn, batch, batch.header.day in complete)
                        closed.add(batch.header.day)
                        result.days_closed += stored
                    elif await self._claim_chunk(conn, batch, batch.header.day in complete):
                        try:
                            result.rows += await self._write_chunk(conn, message, batch, dead)
                            result.chunks += 1
                            if batch.header.day == 0 and batch.header.table == "patients":
                                await self._index_national_ids(conn)
                        except ChunkOutOfOrder as exc:  # its copy sent again is stored
                            await self._release_chunk(conn, batch)
                            dead.append(
                                DeadLetter(message, DeadLetterKind.OUT_OF_ORDER, str(exc), batch.header.day)
                            )
                    else:
                        result.replayed_chunks += 1
                except InvalidMessage as exc:  # it contradicts what is stored: nothing of it is kept
                    dead.append(DeadLetter(message, DeadLetterKind(exc.kind), str(exc), batch.header.day))
                    continue
                days.add(batch.header.day)
            stream_days = {t.day for t in transfers.values()} | closed
            if stream_days:
                dead.extend(await self._reject_unconfirmed(conn, run_id or "", sorted(stream_days)))
            if census:
                new_census = await self._store_census(conn, census, complete, dead)
                days.update(c.day for c in new_census)
            if days:
                await conn.execute(COMPLETE_DAYS)
            if dead:
                await self._dead_letter(conn, dead)
                result.dead_letters += len(dead)
                for letter in dead:  # ids only: a reason may quote the message's values
                    logger.warning(
                        "dead letter from %s[%d]@%d row %d (reason in dead_letters)",
                        letter.source.topic,
                        letter.source.partition,
                        letter.source.offset,
                        letter.row_number,
                    )
            failpoints.hit("sink.before_commit", newest := max(days | stream_days, default=None))
        failpoints.hit("sink.after_commit", newest)
        return result

    async def _index_national_ids(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Once the ledger holds all of day 0's patients (the catchment), build the national id's
        unique index, in this transaction: filled once in one sort, where an index there during
        the COPY was filled in random order, and refusing every later day's duplicate. Should the
        stored patients repeat an id (a forged chunk stored first), it is left unbuilt, with a
        warning, and ``validate``'s "national ids unique" check reports them."""
        cur = await conn.execute(DAY_ZERO_PATIENTS_STORED, (self.settings.population,))
        row = await cur.fetchone()
        if not (row and row[0]):
            return
        try:
            async with conn.transaction():
                await conn.execute(db.INDEX_NATIONAL_IDS)
        except psycopg.errors.UniqueViolation:
            logger.warning(
                "day 0's patients repeat a national id: their unique index is not built"
                " (validate lists the duplicates)"
            )

    def _check_batch_day(self, header: BatchHeader) -> None:
        """A batch message's day is in the schedule, and a day message names that day's date."""
        check_in_schedule(header.day, self.context.schedule_days)
        expected = self.context.start_date + dt.timedelta(days=header.day)
        if header.kind == "day" and header.date != expected.isoformat():
            raise InvalidMessage(f"day message of day {header.day} with date {header.date!r}, not {expected}")

    def _dead_letter_of(self, message: Incoming) -> DeadLetter:
        """What a message of the dead-letter topic stands for; a bad one is a dead letter of its
        own (``bad_dead_letter``, at its own topic, partition and offset), never sent anywhere."""
        try:
            return check_dead_letter(parse_dead_letter(message.value), message.key, self.agent_topics)
        except InvalidMessage as exc:
            return DeadLetter(message, DeadLetterKind.BAD_DEAD_LETTER, str(exc))

    async def stored_run(self) -> str | None:
        """The run the database holds, for agents that check a message's run before they act on
        it; None while it is not known (no run yet, or PostgreSQL unreachable: the sink still
        checks every message it stores)."""
        if self._stored_run is None and self.ready.is_set():
            try:
                async with self.pool.connection() as conn:
                    self._stored_run = await self._run_id(conn)
            except psycopg.OperationalError as exc:
                logger.debug("could not read the run id: %s", exc)
        return self._stored_run

    async def _run_id(self, conn: psycopg.AsyncConnection[Any]) -> str | None:
        row = await (await conn.execute("SELECT run_id FROM simulation")).fetchone()
        return row[0] if row else None

    async def _merge_streamed(
        self, conn: psycopg.AsyncConnection[Any], transfers: list[StreamedTransfer]
    ) -> None:
        stage = await _stage(conn, "stream_transfers", "transfers", TRANSFER_COLUMNS)
        await _copy(conn, stage, TRANSFER_COLUMNS, encode_copy_rows(t.row() for t in transfers))
        await conn.execute(_merge_sql(stage, "seen_in_stream", "seen_in_batch", batch_wins=False))

    async def _reject_unconfirmed(
        self, conn: psycopg.AsyncConnection[Any], run_id: str, days: list[int]
    ) -> list[DeadLetter]:
        """Streamed transfers of a closed day that its batch does not hold never happened:
        move them from ``transfers`` to the dead letters."""
        columns = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in TRANSFER_COLUMNS)
        cur = await conn.execute(
            sql.SQL(
                "DELETE FROM transfers t USING sim_days d"
                " WHERE d.sim_day = t.sim_day AND t.sim_day = ANY(%s) AND t.seen_in_stream"
                " AND NOT t.seen_in_batch RETURNING {}"
            ).format(columns),
            (days,),
        )
        topic = next(t for t, kind in self.topics.items() if kind == TopicRole.STREAMED)
        letters = []
        for row in await cur.fetchall():
            transfer = streamed_transfer_from_row(run_id, row)
            source = Incoming(
                topic, -1, transfer.transfer_id, transfer.dumps(), str(transfer.admission_id).encode()
            )
            reason = f"streamed transfer {transfer.transfer_id} is not in the batch of day {transfer.day}"
            letters.append(DeadLetter(source, DeadLetterKind.UNCONFIRMED_STREAM, reason, transfer.day))
        return letters

    async def _claim_chunk(
        self, conn: psycopg.AsyncConnection[Any], batch: BatchMessage, day_complete: bool
    ) -> bool:
        """Enter the chunk in the ledger: True to store its rows, False for a copy of a stored
        chunk; InvalidMessage for one that a complete day never had (``day_closed``) or that
        contradicts the chunk stored under its day and number (``conflict``)."""
        header = batch.header
        if not day_complete:
            cur = await conn.execute(
                "INSERT INTO ingested_chunks (sim_day, seq, table_name, row_count, digest)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (header.day, header.seq, header.table, header.rows, header.digest),
            )
            if cur.rowcount == 1:
                return True
        cur = await conn.execute(
            "SELECT table_name = %s AND row_count = %s AND coalesce(digest = %s, true)"
            " FROM ingested_chunks WHERE sim_day = %s AND seq = %s",
            (header.table, header.rows, header.digest, header.day, header.seq),
        )
        row = await cur.fetchone()
        if row and row[0]:
            return False
        what = f"chunk {header.day}/{header.seq} ({header.table})"
        if day_complete:
            raise _day_closed_error(header.day, what)
        raise InvalidMessage(
            f"{what} differs from the chunk stored as {header.day}/{header.seq}", DeadLetterKind.CONFLICT
        )

    async def _release_chunk(self, conn: psycopg.AsyncConnection[Any], batch: BatchMessage) -> None:
        await conn.execute(
            "DELETE FROM ingested_chunks WHERE sim_day = %s AND seq = %s",
            (batch.header.day, batch.header.seq),
        )

    async def _write_chunk(
        self,
        conn: psycopg.AsyncConnection[Any],
        message: Incoming,
        batch: BatchMessage,
        dead: list[DeadLetter],
    ) -> int:
        """Write a chunk in a savepoint; if PostgreSQL rejects it, find the bad rows by halving.

        A chunk that names rows PostgreSQL does not have (a foreign key, an update's target)
        while a chunk before it is not stored either arrived out of order, not with bad rows:
        it raises ChunkOutOfOrder, so that neither its rows nor its ledger entry are kept and the
        copy the generator sends again is stored whole. (A hole in the batch partition, e.g. a send
        the broker refused between two it took, would otherwise lose the chunk's rows for good.)
        """
        try:  # the payload as it came: no copy of its rows on the usual path
            return await _write_rows(conn, batch, batch.payload, batch.header.rows)
        except (*_ROW_ERRORS, RowsMissing) as exc:
            await _check_in_order(conn, batch.header, exc)
            logger.info(  # not the error text: PostgreSQL quotes the offending value
                "chunk %d/%d (%s) rejected (%s); looking for its bad rows",
                batch.header.day,
                batch.header.seq,
                batch.header.table,
                type(exc).__name__,
            )
            error: Exception = exc
        lines = list(enumerate(batch.payload.splitlines(keepends=True), start=1))
        return await self._bisect(conn, message, batch, lines, dead, error)

    async def _write_lines(
        self,
        conn: psycopg.AsyncConnection[Any],
        message: Incoming,
        batch: BatchMessage,
        lines: list[tuple[int, bytes]],
        dead: list[DeadLetter],
    ) -> int:
        try:
            return await _write_rows(conn, batch, b"".join(line for _, line in lines), len(lines))
        except (*_ROW_ERRORS, RowsMissing) as exc:
            return await self._bisect(conn, message, batch, lines, dead, exc)

    async def _bisect(
        self,
        conn: psycopg.AsyncConnection[Any],
        message: Incoming,
        batch: BatchMessage,
        lines: list[tuple[int, bytes]],
        dead: list[DeadLetter],
        error: Exception,
    ) -> int:
        """Rows PostgreSQL rejected together: each half again, down to the single bad rows."""
        if len(lines) == 1:
            number, line = lines[0]
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            header = batch.header
            dead.append(
                DeadLetter(
                    message,
                    DeadLetterKind.BAD_ROW,
                    f"{header.table}: {reason}",
                    header.day,
                    row_number=number,
                    payload=line,
                    table=header.table,
                )
            )
            return 0
        half = len(lines) // 2
        return await self._write_lines(conn, message, batch, lines[:half], dead) + await self._write_lines(
            conn, message, batch, lines[half:], dead
        )

    async def _close_day(
        self, conn: psycopg.AsyncConnection[Any], batch: BatchMessage, day_complete: bool
    ) -> int:
        """Store the day's closing message (1), or see that it is a copy of the stored one (0);
        InvalidMessage for one that contradicts it (``day_closed`` once the day is complete,
        ``conflict`` before)."""
        header = batch.header
        cur = await conn.execute(
            "INSERT INTO sim_days (sim_day, sim_date, chunks, row_counts, streamed, checkpoint)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                header.day,
                header.date,
                header.chunks,
                json.dumps(header.row_counts),
                header.streamed,
                batch.payload,
            ),
        )
        if cur.rowcount == 1:
            return 1
        cur = await conn.execute(
            "SELECT chunks = %s AND sim_date = %s::date AND row_counts = %s::jsonb AND streamed = %s"
            " AND checkpoint = %s FROM sim_days WHERE sim_day = %s",
            (
                header.chunks,
                header.date,
                json.dumps(header.row_counts),
                header.streamed,
                batch.payload,
                header.day,
            ),
        )
        row = await cur.fetchone()
        if row and row[0]:
            return 0
        what = f"day message of day {header.day}"
        if day_complete:
            raise _day_closed_error(header.day, what)
        raise InvalidMessage(f"{what} differs from the one stored", DeadLetterKind.CONFLICT)

    async def _store_census(
        self,
        conn: psycopg.AsyncConnection[Any],
        census: list[tuple[Incoming, WardCensus]],
        complete: set[int],
        dead: list[DeadLetter],
    ) -> list[WardCensus]:
        """Store the wards' census not stored yet; a copy of a stored one is skipped, and one
        that contradicts it (or a complete day) is a dead letter. The census stored."""
        cur = await conn.execute(
            "SELECT sim_day, ward_id, occupied FROM ward_census"
            " WHERE (sim_day, ward_id) IN (SELECT * FROM unnest(%s::integer[], %s::integer[]))",
            ([c.day for _, c in census], [c.ward_id for _, c in census]),
        )
        stored = {(day, ward): occupied for day, ward, occupied in await cur.fetchall()}
        new: dict[tuple[int, int], WardCensus] = {}
        for message, item in census:
            place = (item.day, item.ward_id)
            known = stored.get(place, new[place].occupied if place in new else None)
            if known == item.occupied:
                continue
            what = f"census of ward {item.ward_id} on day {item.day}"
            if item.day in complete:
                dead.append(_day_closed(message, item.day, what))
            elif known is not None:
                reason = f"{what} says {item.occupied} occupied, {known} is stored"
                dead.append(DeadLetter(message, DeadLetterKind.CONFLICT, reason, item.day))
            else:
                new[place] = item
        if new:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO ward_census (sim_day, ward_id, occupied) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [(c.day, c.ward_id, c.occupied) for c in new.values()],
                )
        return list(new.values())

    async def _dead_letter(self, conn: psycopg.AsyncConnection[Any], dead: list[DeadLetter]) -> None:
        rows = []
        for letter in dead:
            payload = letter.payload if letter.payload is not None else letter.source.value or b""
            size = len(payload) if letter.payload_bytes is None else letter.payload_bytes
            source = letter.source
            rows.append(
                (
                    _storable(source.topic),
                    source.partition,
                    source.offset,
                    source.key,
                    letter.row_number,
                    None if letter.table is None else _storable(letter.table),
                    str(letter.kind),
                    letter.sim_day,
                    _storable(letter.reason[:1000]),
                    payload[:DEAD_LETTER_PAYLOAD_BYTES],
                    size,
                )
            )
        async with conn.cursor() as cur:
            await cur.executemany(
                'INSERT INTO dead_letters (topic, partition, "offset", message_key, row_number, table_name,'
                " kind, sim_day, reason, payload, payload_bytes)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                # the same message again (redelivered, or replayed and still bad): one row, open again
                ' ON CONFLICT (topic, partition, "offset", row_number)'
                " DO UPDATE SET kind = EXCLUDED.kind, sim_day = EXCLUDED.sim_day,"
                " reason = EXCLUDED.reason, payload = EXCLUDED.payload,"
                " payload_bytes = EXCLUDED.payload_bytes, message_key = EXCLUDED.message_key,"
                " table_name = EXCLUDED.table_name, received_at = now(), replayed_at = NULL",
                rows,
            )


async def _check_in_order(conn: psycopg.AsyncConnection[Any], header: BatchHeader, error: Exception) -> None:
    """Raise ChunkOutOfOrder when ``error`` is a missing reference and a chunk before this one
    is not stored."""
    if not isinstance(error, (psycopg.errors.ForeignKeyViolation, RowsMissing)):
        return
    cur = await conn.execute(PREDECESSORS_STORED, {"day": header.day, "seq": header.seq})
    row = await cur.fetchone()
    if row and row[0]:
        return
    raise ChunkOutOfOrder(
        f"chunk {header.day}/{header.seq} ({header.table}) names rows of chunks not stored yet: it came"
        f" out of order and is stored when the generator sends day {header.day} again"
    )


async def _write_rows(
    conn: psycopg.AsyncConnection[Any], batch: BatchMessage, payload: bytes, rows: int
) -> int:
    """``rows`` rows of a chunk, in a savepoint."""
    async with conn.transaction():
        await apply_rows(conn, batch.spec, payload, rows, day=batch.header.day)
    return rows


async def apply_rows(
    conn: psycopg.AsyncConnection[Any], spec: TableSpec, payload: bytes, rows: int, *, day: int | None = None
) -> None:
    """Write ``rows`` COPY-text rows of one batch table (insert, merge or update) of ``day``."""
    if spec.mode == "insert":
        await _copy(conn, spec.target, spec.columns, payload, day)
        return
    stage = await _stage(conn, spec.name, spec.target, spec.columns)
    await _copy(conn, stage, spec.columns, payload, day)
    if spec.mode == "merge_transfers":
        await conn.execute(_merge_sql(stage, "seen_in_batch", "seen_in_stream", batch_wins=True))
        return
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in spec.columns if c not in spec.key
    )
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(c)) for c in spec.key)
    cur = await conn.execute(
        sql.SQL("UPDATE {} t SET {} FROM {} s WHERE {}").format(
            sql.Identifier(spec.target), assignments, sql.Identifier(stage), match
        )
    )
    if cur.rowcount != rows:
        raise RowsMissing(f"{rows - cur.rowcount} of {rows} rows name no stored {spec.target} row")


async def _stage(conn: psycopg.AsyncConnection[Any], name: str, target: str, columns: Sequence[str]) -> str:
    """An empty temporary table with ``columns`` of ``target`` (dropped at commit)."""
    stage = f"stage_{name}"
    await conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(stage),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(target),
        )
    )
    await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))
    return stage


async def _copy(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    payload: bytes,
    day: int | None = None,
) -> None:
    """COPY ``payload`` into ``table``; ``day``: the simulated day of a batch chunk's rows."""
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor() as cur, cur.copy(query) as copy:
        await copy.write(payload)
        if day is not None:  # a chunk's rows are sent and its COPY not ended
            failpoints.hit("sink.mid_copy", day)


def parse_dead_letter(raw: bytes | None) -> DeadLetter:
    """A dead letter an agent sent through the dead-letter topic (see
    wire.dead_letters.encode_dead_letter); one without a kind is ``agent_rejected``.

    It must be what an agent sends: our schema version, a kind an agent may name, and where the
    message came from. Anything else raises InvalidMessage of kind ``bad_dead_letter``.
    """
    try:
        if raw is None:
            raise InvalidMessage("tombstone: the message has no value")
        obj = json_object(raw)
        check_version(obj.get("v"))
        payload = bytes.fromhex(require(obj, "payload", str))
        size = require(obj, "payload_bytes", int)
        if size < len(payload):
            raise InvalidMessage("payload_bytes is less than the payload it holds")
        source = Incoming(
            require(obj, "topic", str),
            require_count(obj, "partition"),
            require_offset(obj),
            payload,
            bytes.fromhex(require(obj, "key", str)) or None,
        )
        kind = DeadLetterKind(obj.get("kind", DeadLetterKind.AGENT_REJECTED))
        if kind not in AGENT_KINDS:
            raise InvalidMessage(f"kind {str(kind)!r} is not one an agent sends")
        return DeadLetter(source, kind, require(obj, "reason", str), payload_bytes=size)
    except (InvalidMessage, TypeError, ValueError) as exc:
        raise _bad_dead_letter(exc) from exc


def check_dead_letter(letter: DeadLetter, key: bytes | None, topics: Collection[str]) -> DeadLetter:
    """``letter``, once it stands for a message of one of ``topics`` and travelled with that
    message's key (``key``), as the agents send them; else InvalidMessage (``bad_dead_letter``)."""
    if letter.source.topic not in topics:
        raise _bad_dead_letter(f"no agent dead-letters messages of topic {letter.source.topic[:80]!r}")
    if (key or b"") != (letter.source.key or b""):
        raise _bad_dead_letter("its key is not the key of the message it stands for")
    return letter


def _storable(text: str) -> str:
    """``text`` as PostgreSQL's text type can hold it, NUL and lone surrogates written as escapes.

    A dead letter's reason and names describe a message, anyone's: one PostgreSQL refused would
    fail its whole buffer at every redelivery, while an escape loses nothing of the description.
    """
    return text.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode()


def _bad_dead_letter(error: object) -> InvalidMessage:
    return InvalidMessage(f"malformed dead letter: {error}", DeadLetterKind.BAD_DEAD_LETTER)


def require_offset(obj: dict[str, Any], name: str = "offset") -> int:
    value: int = require(obj, name, int)
    if not 0 <= value < 2**63:  # "offset" is a PostgreSQL bigint
        raise InvalidMessage(f"field {name!r} is not an offset")
    return value


async def _complete_days(conn: psycopg.AsyncConnection[Any], days: set[int]) -> set[int]:
    """Which of ``days`` are complete."""
    if not days:
        return set()
    cur = await conn.execute(
        "SELECT sim_day FROM sim_days WHERE completed_at IS NOT NULL AND sim_day = ANY(%s)", (sorted(days),)
    )
    return {day for (day,) in await cur.fetchall()}


async def _is_stored_stream_copy(conn: psycopg.AsyncConnection[Any], transfer: StreamedTransfer) -> bool:
    """Whether the transfer was stored as streamed, with these fields (or ones its batch
    replaced: then a copy cannot be told from a forgery, and nothing is changed either way)."""
    cur = await conn.execute(
        "SELECT NOT stream_matches_batch OR (admission_id, patient_id, event_type, from_ward_id, to_ward_id,"
        " transferred_at, sim_day) IS NOT DISTINCT FROM"
        " (%s::bigint, %s::bigint, %s::text, %s::integer, %s::integer, %s::timestamptz, %s::integer)"
        " FROM transfers WHERE transfer_id = %s AND seen_in_stream",
        (*transfer.row()[1:], transfer.transfer_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


def _day_closed_error(day: int, what: str) -> InvalidMessage:
    return InvalidMessage(
        f"{what}: day {day} is complete and never had it as it is", DeadLetterKind.DAY_CLOSED
    )


def _day_closed(message: Incoming, day: int, what: str) -> DeadLetter:
    return DeadLetter(message, DeadLetterKind.DAY_CLOSED, str(_day_closed_error(day, what)), day)


def _check_run(message_run: str, stored_run: str | None) -> None:
    if message_run != stored_run:
        raise InvalidMessage(
            f"message of run {message_run[:40]!r}, database holds run {stored_run!r}",
            DeadLetterKind.WRONG_RUN,
        )


_TRANSFER_FIELDS = [c for c in TRANSFER_COLUMNS if c != "transfer_id"]


def _merge_sql(stage: str, seen_here: str, seen_other: str, *, batch_wins: bool) -> sql.Composed:
    """Insert transfers from ``stage`` or, for ones already stored, mark where they were seen.

    The batch is the hospital's authoritative record: its fields replace a streamed copy's, and
    ``stream_matches_batch`` records whether the two agreed.
    """
    columns = sql.SQL(", ").join(map(sql.Identifier, TRANSFER_COLUMNS))
    stored = sql.SQL(", ").join(sql.SQL("transfers.{}").format(sql.Identifier(c)) for c in _TRANSFER_FIELDS)
    incoming = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in _TRANSFER_FIELDS)
    updates = [
        sql.SQL("{} = true").format(sql.Identifier(seen_here)),
        sql.SQL(
            "stream_matches_batch = CASE WHEN transfers.{} THEN ROW({}) IS NOT DISTINCT FROM ROW({})"
            " ELSE transfers.stream_matches_batch END"
        ).format(sql.Identifier(seen_other), stored, incoming),
    ]
    if batch_wins:
        updates += [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _TRANSFER_FIELDS]
    return sql.SQL(
        "INSERT INTO transfers ({columns}, {seen}) SELECT {columns}, true FROM {stage}"
        " ON CONFLICT (transfer_id) DO UPDATE SET {updates}"
    ).format(
        columns=columns,
        seen=sql.Identifier(seen_here),
        stage=sql.Identifier(stage),
        updates=sql.SQL(", ").join(updates),
    )
