"""Over a thousand bad messages, every kind on every consumed topic (the dead-letter topic too),
some of them twice, during a real run, beside copies of genuine messages: each bad one ends in
``dead_letters`` at its exact topic, partition and offset with its kind, the copies of genuine
messages end nowhere, the run stores every dead letter before it exits, and its data is exactly
what an undisturbed run stores."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import random
import subprocess
import time
from collections.abc import Callable

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hospital_stream import sim
from hospital_stream.settings import Settings
from hospital_stream.tools import kafka_admin
from hospital_stream.wire import batch, compression
from hospital_stream.wire.batch import BATCH_KEY
from hospital_stream.wire.dead_letters import encode_dead_letter
from hospital_stream.wire.kinds import DeadLetterKind as K
from hospital_stream.wire.roles import TopicRole
from tests.helpers import BIN, DAYS, HOSPITAL, assert_same_records, cli, hospital_env, last_day, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: over the broker's 1 MB, and just over the worker's 900 KB
HUGE = [b'{"x": "' + b"a" * 1_200_000 + b'"}', b'{"x": "' + b"a" * 950_000 + b'"}']
#: the day every message "for a complete day" names: the test waits until it is complete
CLOSED_DAY = 1
TOPICS = ("transfers.streamed", "records.batch", "census.daily", "occupancy.changes", "staff.changes")


@dataclasses.dataclass(frozen=True)
class Bad:
    """One hostile message: where it goes, its key and value, and the dead letter it must become."""

    topic: str  # the topic's suffix
    key: bytes | None
    value: bytes | None
    kind: K
    fragment: str  # a piece of the reason


def bad_messages(run_id: str, rng: random.Random) -> list[Bad]:
    """Every kind of bad input on every topic, drawn at random to over a thousand."""
    config = sim.HospitalConfig(seed=int(HOSPITAL["HOSPITAL_SEED"]), beds=100, population=150_000)
    ward, other_ward = config.wards[0].ward_id, config.wards[1].ward_id
    closed_date = config.date_of(CLOSED_DAY)
    counter = iter(range(29_000_000, 30_000_000))

    def transfer(**changes: object) -> bytes:
        obj = {
            "run_id": run_id,
            "day": CLOSED_DAY,
            "transfer_id": next(counter),
            "admission_id": 2_099_999,
            "patient_id": 17,
            "event_type": "transfer",
            "from_ward_id": ward,
            "to_ward_id": other_ward,
            "transferred_at": f"{closed_date}T10:00:00+02:00",
            **changes,
        }
        return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()  # None: left out

    def census(**changes: object) -> bytes:
        return json.dumps({"day": CLOSED_DAY, "ward_id": ward, "occupied": 10**6, **changes}).encode()

    def occupancy(**changes: object) -> bytes:
        return json.dumps({"ward_id": ward, "day": 3, "source": "batch", "moves": [], **changes}).encode()

    def staff(**changes: object) -> bytes:
        return json.dumps(
            {"staff_id": 41, "change": "end", "assignment_id": 7, "on": "2020-01-03", **changes}
        ).encode()

    def chunk(day: int = 5, table: str = "wards", run: str = run_id, **header: object) -> bytes:
        raw = batch.encode_chunk(run, day, 999, table, [(999, "ZZ", "Forged ward", "medicine", 10, day)])
        return _tamper(raw, **header) if header else raw

    def zstd_chunk(**header: object) -> bytes:
        raw = batch.encode_chunk(
            run_id, 5, 999, "wards", [(999, "ZZ", "Forged ward", "medicine", 10, 5)], "zstd"
        )
        return _tamper(raw, **header) if header else raw

    # 10 MB of empty rows in a few hundred bytes: refused before it is decompressed
    bomb = zstd_chunk().partition(b"\n")[0] + b"\n" + compression.compress("zstd", b"\n" * 10_000_000)

    def letter(key: bytes = b"41", **changes: object) -> bytes:
        obj = json.loads(encode_dead_letter(f"{PREFIX}.staff.changes", 0, 3, key, "forged", b"{}"))
        return json.dumps({**obj, **changes}).encode()

    T, B, C, W, S, D = (*TOPICS, "deadletter")  # one letter a topic (W: ward occupancy)
    key_t, key_b, key_w = b"2099999", BATCH_KEY.encode(), str(ward).encode()
    kinds: list[Callable[[], Bad]] = [
        # streamed transfers: the sink refuses them, and the routing agent moves nobody
        lambda: Bad(T, key_t, b"{not json", K.INVALID_MESSAGE, "invalid JSON"),
        lambda: Bad(T, key_t, b"[1, 2, 3]", K.INVALID_MESSAGE, "JSON object"),
        lambda: Bad(T, key_t, b"", K.INVALID_MESSAGE, "empty message"),
        lambda: Bad(T, key_t, transfer(admission_id=None), K.INVALID_MESSAGE, "missing field 'admission_id'"),
        lambda: Bad(T, key_t, transfer(patient_id="17"), K.INVALID_MESSAGE, "must be int"),
        lambda: Bad(
            T, key_t, transfer(event_type="'; DROP TABLE patients; --"), K.INVALID_MESSAGE, "event_type"
        ),
        lambda: Bad(T, key_t, transfer(transferred_at="<script>"), K.INVALID_MESSAGE, "not a timestamp"),
        lambda: Bad(T, key_t, transfer(event_type="admit"), K.INVALID_MESSAGE, "wrong wards"),
        lambda: Bad(T, key_t, transfer(to_ward_id=9999), K.INVALID_MESSAGE, "unknown ward"),
        lambda: Bad(T, key_t, transfer(patient_id=10**9), K.INVALID_MESSAGE, "unknown patient"),
        lambda: Bad(
            T, key_t, transfer(transferred_at="2023-07-01T10:00:00+02:00"), K.INVALID_MESSAGE, "not on"
        ),
        lambda: Bad(T, key_t, transfer(day=-3), K.INVALID_MESSAGE, "is negative"),
        lambda: Bad(T, key_t, None, K.TOMBSTONE, "tombstone"),
        lambda: Bad(T, None, transfer(), K.BAD_KEY, "keyless"),
        lambda: Bad(T, b"hostile", transfer(), K.BAD_KEY, "does not match"),
        lambda: Bad(T, key_t, rng.choice(HUGE), K.OVERSIZED, "exceeds"),
        lambda: Bad(T, key_t, transfer(v=3), K.VERSION, "unsupported schema version"),
        lambda: Bad(T, key_t, transfer(run_id="a-run-long-gone"), K.WRONG_RUN, "database holds run"),
        lambda: Bad(T, key_t, transfer(day=999_999), K.OUTSIDE_SCHEDULE, "past the end of the schedule"),
        lambda: Bad(T, key_t, transfer(), K.DAY_CLOSED, f"day {CLOSED_DAY} is complete"),
        # batch messages
        lambda: Bad(B, key_b, b"no header line at all", K.INVALID_MESSAGE, "no header line"),
        lambda: Bad(B, key_b, chunk(rows=3), K.INVALID_MESSAGE, "header says 3 rows"),
        lambda: Bad(B, key_b, chunk(day=2**40), K.INVALID_MESSAGE, "too large"),
        lambda: Bad(B, key_b, b"{}\nrows", K.VERSION, "unsupported schema version"),
        lambda: Bad(B, key_b, chunk(v=3), K.VERSION, "unsupported schema version"),
        lambda: Bad(B, key_b, chunk(table="users"), K.UNKNOWN_TABLE, "unknown table"),
        lambda: Bad(B, key_b, chunk() + b"9\t9\n", K.DIGEST, "digest mismatch"),
        lambda: Bad(B, key_b, chunk(digest="0" * 32), K.DIGEST, "digest mismatch"),
        lambda: Bad(B, key_b, zstd_chunk(digest="0" * 32), K.DIGEST, "digest mismatch"),
        lambda: Bad(B, key_b, zstd_chunk()[:-3], K.INVALID_MESSAGE, "corrupt zstd payload"),
        lambda: Bad(B, key_b, zstd_chunk(codec="brotli"), K.INVALID_MESSAGE, "unknown payload codec"),
        lambda: Bad(B, key_b, bomb, K.OVERSIZED, "would decompress to 10000000 bytes"),
        lambda: Bad(B, key_b, chunk(run="a-run-long-gone"), K.WRONG_RUN, "database holds run"),
        lambda: Bad(B, key_b, chunk(day=999_999), K.OUTSIDE_SCHEDULE, "past the end of the schedule"),
        lambda: Bad(
            B,
            key_b,
            batch.encode_chunk(run_id, 999_999, 0, "transfers", []),
            K.OUTSIDE_SCHEDULE,
            "past the end of the schedule",
        ),
        lambda: Bad(B, key_b, chunk(day=CLOSED_DAY), K.DAY_CLOSED, "is complete"),
        lambda: Bad(
            B,
            key_b,
            batch.encode_chunk(run_id, rng.choice([0, CLOSED_DAY]), 0, "icd10_codes", [("Z99.9", "F", "x")]),
            K.DAY_CLOSED,
            "is complete",
        ),
        lambda: Bad(
            B,
            key_b,
            batch.encode_day_close(run_id, CLOSED_DAY, 40, closed_date, {}, 0, b"forged"),
            K.DAY_CLOSED,
            "is complete",
        ),
        lambda: Bad(
            B,
            key_b,
            batch.encode_day_close(run_id, 7, 40, dt.date(2021, 1, 1), {}, 0, b"forged"),
            K.INVALID_MESSAGE,
            "with date",
        ),
        lambda: Bad(B, key_b, None, K.TOMBSTONE, "tombstone"),
        lambda: Bad(B, None, chunk(), K.BAD_KEY, "keyless"),
        lambda: Bad(B, b"hostile", chunk(), K.BAD_KEY, "does not match"),
        lambda: Bad(B, key_b, rng.choice(HUGE), K.OVERSIZED, "exceeds"),
        # the wards' census
        lambda: Bad(C, key_w, b'{"day": 1}', K.INVALID_MESSAGE, "missing field 'ward_id'"),
        lambda: Bad(C, key_w, census(ward_id=2**40), K.INVALID_MESSAGE, "unknown ward"),
        lambda: Bad(C, b"9999", census(ward_id=9999), K.INVALID_MESSAGE, "unknown ward"),
        lambda: Bad(C, key_w, census(v=3), K.VERSION, "unsupported schema version"),
        lambda: Bad(C, key_w, census(day=999_999), K.OUTSIDE_SCHEDULE, "past the end of the schedule"),
        lambda: Bad(C, key_w, census(), K.DAY_CLOSED, "is complete"),
        lambda: Bad(C, key_w, None, K.TOMBSTONE, "tombstone"),
        lambda: Bad(C, None, census(), K.BAD_KEY, "keyless"),
        lambda: Bad(C, str(other_ward).encode(), census(), K.BAD_KEY, "does not match"),
        lambda: Bad(C, key_w, rng.choice(HUGE), K.OVERSIZED, "exceeds"),
        # occupancy and staff changes: the agents send them through the dead-letter topic
        lambda: Bad(W, key_w, b"\xff\xfe", K.AGENT_REJECTED, "invalid JSON"),
        lambda: Bad(W, b"9999", occupancy(ward_id=9999), K.AGENT_REJECTED, "unknown ward"),
        lambda: Bad(W, key_w, occupancy(moves=[[1, 2, 5]]), K.AGENT_REJECTED, "moves must be"),
        lambda: Bad(W, key_w, occupancy(day=999_999), K.OUTSIDE_SCHEDULE, "past the end of the schedule"),
        lambda: Bad(W, key_w, occupancy(v=3), K.VERSION, "unsupported schema version"),
        lambda: Bad(W, key_w, None, K.TOMBSTONE, "tombstone"),
        lambda: Bad(W, None, occupancy(), K.BAD_KEY, "keyless"),
        lambda: Bad(W, str(other_ward).encode(), occupancy(), K.BAD_KEY, "does not match"),
        lambda: Bad(W, key_w, rng.choice(HUGE), K.OVERSIZED, "exceeds"),
        lambda: Bad(S, b"41", staff(change="promote"), K.AGENT_REJECTED, "unknown staff change"),
        lambda: Bad(S, b"41", staff(on="soon"), K.AGENT_REJECTED, "not a date"),
        lambda: Bad(S, b"41", staff(v=3), K.VERSION, "unsupported schema version"),
        lambda: Bad(S, b"41", None, K.TOMBSTONE, "tombstone"),
        lambda: Bad(S, None, staff(), K.BAD_KEY, "keyless"),
        lambda: Bad(S, b"42", staff(), K.BAD_KEY, "does not match"),
        lambda: Bad(S, b"41", rng.choice(HUGE), K.OVERSIZED, "exceeds"),
        # the dead-letter topic itself: each one a dead letter of its own, where it was read
        lambda: Bad(D, b"41", b"{not json", K.BAD_DEAD_LETTER, "invalid JSON"),
        lambda: Bad(D, b"41", None, K.BAD_DEAD_LETTER, "tombstone"),
        lambda: Bad(D, b"41", rng.choice(HUGE), K.BAD_DEAD_LETTER, "exceeds"),
        lambda: Bad(D, b"41", letter(v=3), K.BAD_DEAD_LETTER, "unsupported schema version"),
        lambda: Bad(D, b"41", letter(topic=f"{PREFIX}.records.batch"), K.BAD_DEAD_LETTER, "no agent"),
        lambda: Bad(D, b"41", letter(kind="bad_row"), K.BAD_DEAD_LETTER, "not one an agent sends"),
        lambda: Bad(D, b"41", letter(offset=-1), K.BAD_DEAD_LETTER, "not an offset"),
        lambda: Bad(D, b"41", letter(payload="zz"), K.BAD_DEAD_LETTER, "non-hexadecimal"),
        lambda: Bad(D, b"42", letter(), K.BAD_DEAD_LETTER, "its key is not"),
        lambda: Bad(D, None, letter(), K.BAD_DEAD_LETTER, "its key is not"),
    ]
    plans = [kind() for kind in kinds]  # each kind at least once
    while len(plans) < 1000:
        plans.append(rng.choice(kinds)())
    return plans


#: the run's topic prefix, set by the test before it draws the messages
PREFIX = ""


def _tamper(raw: bytes, **changes: object) -> bytes:
    head, _, payload = raw.partition(b"\n")
    return json.dumps({**json.loads(head), **changes}).encode() + b"\n" + payload


Sent = tuple[str, int, int]  # topic, partition, offset


async def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes | None]]) -> list[Sent]:
    """Send each (topic, key, value) and wait for it; where each one landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=1, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        landed = []
        for topic, key, value in messages:
            sent = await producer.send_and_wait(topic, value, key=key)
            landed.append((sent.topic, sent.partition, sent.offset))
        return landed
    finally:
        await producer.stop()


async def genuine_messages(bootstrap: str, prefix: str) -> list[tuple[str, bytes | None, bytes | None]]:
    """The run's own messages so far of days up to CLOSED_DAY (streamed, batch, census), as read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [f"{prefix}.{suffix}" for suffix in TOPICS[:3]]
        await consumer.topics()
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    head = record.value.partition(b"\n")[0] if record.value else b"{}"
                    if json.loads(head).get("day", 10**9) <= CLOSED_DAY:
                        found.append((record.topic, record.key, record.value))
        return found
    finally:
        await consumer.stop()


def test_every_bad_message_is_dead_lettered_where_it_was_read_and_the_run_is_unharmed(
    reference_run, embedded_stack, tmp_path, record_property
):
    global PREFIX
    env = hospital_env(embedded_stack, default_logins=True)
    url, PREFIX = env["HOSPITAL_DATABASE_URL"], env["HOSPITAL_TOPIC_PREFIX"]
    bootstrap = "{}:{}".format(*embedded_stack.kafka_address)
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        [str(BIN / "hospital-stream"), "run", "--days", str(DAYS), "--speed", "300"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    wait_until(
        f"day {CLOSED_DAY} complete",
        lambda: last_day(url) >= CLOSED_DAY,
        240,
        give_up=lambda: run.poll() is not None,
        context=lambda: log.read_text()[-3000:],
    )
    with psycopg.connect(url) as conn:
        run_id = conn.execute("SELECT run_id FROM simulation").fetchone()[0]
    rng = random.Random(99)
    plans = bad_messages(run_id, rng)
    replays = rng.sample(plans, 100)  # the same bad messages again: each a dead letter of its own
    genuine = asyncio.run(genuine_messages(bootstrap, PREFIX))
    genuine = rng.sample(genuine, min(len(genuine), 80))  # chunks, day messages, transfers, census
    assert len(genuine) > 20
    bad = [(f"{PREFIX}.{b.topic}", b.key, b.value) for b in plans + replays]
    messages = bad + genuine
    order = list(range(len(messages)))
    rng.shuffle(order)
    landed = dict(zip(order, asyncio.run(produce(bootstrap, [messages[i] for i in order])), strict=True))
    assert run.wait(timeout=400) == 0, log.read_text()[-3000:]
    assert run.poll() == 0 and "had not committed" not in log.read_text()

    # no waiting here: the run stored every dead letter of what it consumed before it exited
    with psycopg.connect(url) as conn:
        letters = conn.execute(
            'SELECT topic, partition, "offset", row_number, kind, reason, payload_bytes FROM dead_letters'
        ).fetchall()
        ledger = conn.execute(
            "SELECT sim_day, seq, table_name, row_count, digest FROM ingested_chunks ORDER BY 1, 2"
        ).fetchall()
    with psycopg.connect(reference_run["HOSPITAL_DATABASE_URL"]) as conn:
        reference_ledger = conn.execute(
            "SELECT sim_day, seq, table_name, row_count, digest FROM ingested_chunks ORDER BY 1, 2"
        ).fetchall()
    stored = {(t, p, o): (row, kind, reason, size) for t, p, o, row, kind, reason, size in letters}
    record_property(
        "fault",
        f"sent {len(bad)} bad messages and {len(genuine)} genuine copies; {len(letters)} dead letters",
    )
    assert len(stored) == len(letters) == len(bad)
    for index, plan in enumerate(plans + replays):
        where = landed[index]
        assert where in stored, (plan, where)
        row, kind, reason, size = stored[where]
        assert (row, kind) == (0, plan.kind), (plan.topic, plan.fragment, stored[where])
        assert plan.fragment in reason, (plan, reason)
        assert size == len(plan.value or b""), plan
    assert ledger == reference_ledger  # no chunk of theirs is entered, and none of the run's is missing
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    declared = collections.Counter(str(b.kind) for b in plans + replays)
    assert cli(env, "validate", "--skip-content").returncode == 1  # dead letters not declared
    args = [a for kind, n in sorted(declared.items()) for a in ("--expect-dead-letters", f"{kind}={n}")]
    result = cli(env, "validate", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_waits_until_the_group_committed_every_input_topic_to_its_end(embedded_stack):
    settings = Settings.from_env(hospital_env(embedded_stack))
    bootstrap = "{}:{}".format(*embedded_stack.kafka_address)
    staff, letters = (role.topic(settings.topic_prefix) for role in (TopicRole.STAFF, TopicRole.DEAD_LETTERS))
    epoch = TopicRole.BROKER_EPOCH.topic(settings.topic_prefix)  # not an input: never waited for
    sent = asyncio.run(
        produce(bootstrap, [(staff, b"5", b"{}")] * 5 + [(letters, b"", b"{}")] * 3 + [(epoch, b"e", b"{}")])
    )

    started = time.monotonic()
    left = kafka_admin.wait_until_drained(settings, timeout=3, every=1)
    assert left and f"{staff} 5" in left and f"{letters} 3" in left and epoch not in left, left
    assert time.monotonic() - started >= 2  # it looked until the timeout

    async def commit_all() -> None:  # as the worker's group does once it stored them
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=settings.app_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            ends = {TopicPartition(t, p): o + 1 for t, p, o in sent if t != epoch}
            consumer.assign(list(ends))
            await consumer.commit(ends)
        finally:
            await consumer.stop()

    asyncio.run(commit_all())
    started = time.monotonic()
    assert kafka_admin.wait_until_drained(settings, timeout=30, every=1) is None
    assert 1 <= time.monotonic() - started < 30  # seen twice, a second apart
