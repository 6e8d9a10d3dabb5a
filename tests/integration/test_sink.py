"""The sink on a real PostgreSQL, without the broker: what it does with a batch partition that
has a hole (a chunk the broker never took, between two it did) and with the copy sent again,
with a chunk holding bad rows, with copies and contradictions of what it stored, and what
migration 0009 makes of dead letters stored before it."""

from __future__ import annotations

import asyncio
import json

import msgspec
import psycopg
import pytest

from hospital_stream import db, sim
from hospital_stream.settings import Settings
from hospital_stream.sink import Incoming, PostgresSink
from hospital_stream.wire import batch, compression
from hospital_stream.wire.batch import BATCH_KEY, chunk_message, encode_day
from hospital_stream.wire.dead_letters import DeadLetterKind, encode_dead_letter
from hospital_stream.wire.messages import WardCensus, streamed_transfer_from_row
from hospital_stream.wire.roles import TopicRole

pytestmark = [pytest.mark.integration]

HOSPITAL = {"HOSPITAL_BEDS": "60", "HOSPITAL_POPULATION": "12000", "HOSPITAL_SEED": "7"}
BATCH_TOPIC = "t.records.batch"
TOPICS = {
    "t.transfers.streamed": TopicRole.STREAMED,
    BATCH_TOPIC: TopicRole.BATCH,
    "t.census.daily": TopicRole.CENSUS,
}


def _migrate_before(database_url: str, tmp_path, version: int) -> None:
    """The database migrated as it was before migration ``version``."""
    before = tmp_path / "sql"
    before.mkdir()
    for migration in db.migrations():
        if migration.version < version:
            (before / migration.path.name).write_text(migration.path.read_text())
    db.migrate(database_url, before)


def _store(settings: Settings, batches: list[list[bytes]]) -> list:
    """Each list of messages stored as one buffer by a sink of its own; the results."""

    async def run() -> list:
        sink = PostgresSink(settings, TOPICS)
        await sink.on_start()
        try:
            results, offset = [], 0
            for values in batches:
                messages = []
                for value in values:
                    messages.append(Incoming(BATCH_TOPIC, 0, offset, value, b"hospital-batch"))
                    offset += 1
                results.append(await sink.store(messages))
            return results
        finally:
            await sink.on_stop()

    return asyncio.run(run())


@pytest.fixture
def two_days(database_url):
    """A migrated database holding a run, and the model's first two days of that run."""
    settings = Settings.from_env({"HOSPITAL_DATABASE_URL": database_url, **HOSPITAL})
    config = sim.HospitalConfig.from_settings(settings)
    db.migrate(database_url)
    with db.connect(database_url) as conn:
        run_id = db.ensure_run(conn, "run-a", config.to_json())
    day0, day1 = list(sim.iter_days(config, 2))
    return settings, run_id, day0, day1


def test_a_chunk_after_a_hole_is_refused_whole_and_its_copy_sent_again_is_stored(two_days, database_url):
    settings, run_id, day0, _ = two_days
    first = encode_day(run_id, day0)
    tables = [batch.parse_batch_message(m).header.table for m in first]
    hole = tables.index("admissions")
    # the discharges update admissions of the missing chunk; the diagnoses name them too, but
    # have no foreign key: they are stored, and validate judges them once the day is complete
    assert {"admission_discharges", "diagnoses"} <= set(tables[hole:])

    refused, again = _store(settings, [first[:hole] + first[hole + 1 :], first])

    with psycopg.connect(database_url) as conn:
        letters = conn.execute(
            "SELECT reason, kind, sim_day, row_number FROM dead_letters ORDER BY dead_letter_id"
        ).fetchall()
        stored = {
            table: conn.execute(f"SELECT count(*) FROM {table} WHERE sim_day = 0").fetchone()[0]
            for table in ("admissions", "diagnoses", "transfers")
        }
        discharged = conn.execute(
            "SELECT count(*) FROM admissions WHERE sim_day = 0 AND discharged_at IS NOT NULL"
        ).fetchone()[0]
        ledger = conn.execute("SELECT count(*) FROM ingested_chunks WHERE sim_day = 0").fetchone()[0]
    # refused whole, without a ledger entry and without row-by-row dead letters
    assert refused.dead_letters == len(letters) >= 1
    assert all("came out of order" in reason for reason, *_ in letters), letters
    assert {(kind, day, row) for _, kind, day, row in letters} == {("out_of_order", 0, 0)}
    # the copy sent again fills the hole and everything after it: nothing of day 0 is lost
    assert again.chunks == len(letters) + 1 and again.dead_letters == 0
    assert ledger == len(first) - 1
    for table, n in stored.items():
        assert n == len(day0.tables[table]), table
    assert discharged == len(day0.tables["admission_discharges"]) > 0


def test_the_bad_rows_of_a_chunk_are_dead_lettered_with_their_day_and_the_rest_stored(two_days, database_url):
    settings, run_id, day0, day1 = two_days
    second = encode_day(run_id, day1)
    seq = next(i for i, m in enumerate(second) if batch.parse_batch_message(m).header.table == "lab_results")
    chunk = batch.parse_batch_message(second[seq])
    lines = chunk.payload.splitlines(keepends=True)
    bad = {2, len(lines)}  # 1-based, as dead_letters.row_number counts them
    assert len(lines) > 2
    for number in bad:  # a lab result id that is no number: PostgreSQL refuses the row
        lines[number - 1] = b"x" + lines[number - 1]
    second[seq] = chunk_message(run_id, 1, seq, "lab_results", b"".join(lines), len(lines))

    _, result = _store(settings, [encode_day(run_id, day0), second])

    with psycopg.connect(database_url) as conn:
        letters = conn.execute(
            "SELECT kind, sim_day, row_number, table_name, payload FROM dead_letters ORDER BY row_number"
        ).fetchall()
        stored = conn.execute("SELECT count(*) FROM lab_results WHERE sim_day = 1").fetchone()[0]
    assert result.dead_letters == len(letters) == len(bad)
    assert [(kind, day, row, table) for kind, day, row, table, _ in letters] == [
        (DeadLetterKind.BAD_ROW, 1, number, "lab_results") for number in sorted(bad)
    ]
    assert [payload for *_, payload in letters] == [lines[number - 1] for number in sorted(bad)]
    assert stored == len(lines) - len(bad)


def _store_messages(settings: Settings, buffers: list[list[tuple[str, bytes, bytes]]]) -> list[Incoming]:
    """Each list of (topic, key, value) stored as one buffer, offsets counted per topic; the
    messages as the sink got them."""

    async def run() -> list[Incoming]:
        sink = PostgresSink(settings, TOPICS)
        await sink.on_start()
        offsets: dict[str, int] = {}
        sent = []
        try:
            for buffer in buffers:
                messages = []
                for topic, key, value in buffer:
                    offsets[topic] = offsets.get(topic, -1) + 1
                    messages.append(Incoming(topic, 0, offsets[topic], value, key))
                await sink.store(messages)
                sent += messages
            return sent
        finally:
            await sink.on_stop()

    return asyncio.run(run())


def test_copies_are_skipped_contradictions_refused_and_a_complete_day_takes_nothing_new(
    two_days, database_url
):
    settings, run_id, day0, day1 = two_days
    streamed, census = "t.transfers.streamed", "t.census.daily"
    key = BATCH_KEY.encode()
    first, second = encode_day(run_id, day0), encode_day(run_id, day1)
    transfers = [streamed_transfer_from_row(run_id, row) for slot in day0.streamed for row in slot]
    wards = [w.ward_id for w in sim.HospitalConfig.from_settings(settings).wards]
    day0_census = [(census, str(w).encode(), WardCensus(day=0, ward_id=w, occupied=1).dumps()) for w in wards]
    day0_all = (
        [(BATCH_TOPIC, key, m) for m in first]
        + [(streamed, t.key().encode(), t.dumps()) for t in transfers]
        + day0_census
    )
    forged_transfer = msgspec.structs.replace(transfers[0], transfer_id=10**12)
    chunk0 = batch.parse_batch_message(first[0])
    other_rows = chunk0.payload.replace(b"\n", b"x\n", 1)
    closing = batch.parse_batch_message(first[-1]).header
    # the first chunk as it was sent (zstd) again, and plain: the same chunk, skipped as a copy
    plain_copy = chunk_message(run_id, 0, 0, chunk0.header.table, chunk0.payload, chunk0.header.rows, "none")
    assert chunk0.header.codec == "zstd" and plain_copy != first[0]
    corrupt = first[0][:-8]  # a frame cut short
    bomb_header = json.loads(first[0].partition(b"\n")[0]) | {"rows": 2_000_000}
    bomb = json.dumps(bomb_header).encode() + b"\n" + compression.compress("zstd", b"\n" * 2_000_000)
    refused = [  # each: (message, the kind it must become)
        ((BATCH_TOPIC, key, corrupt), "invalid_message"),
        ((BATCH_TOPIC, key, bomb), "oversized"),
        (
            (
                BATCH_TOPIC,
                key,
                chunk_message(run_id, 0, 0, chunk0.header.table, other_rows, chunk0.header.rows),
            ),
            "day_closed",
        ),
        ((BATCH_TOPIC, key, chunk_message(run_id, 0, 999, "wards", b"", 0)), "day_closed"),
        (
            (BATCH_TOPIC, key, batch.encode_day_close(run_id, 0, closing.chunks, day0.date, {}, 0, b"x")),
            "day_closed",
        ),
        ((census, day0_census[0][1], WardCensus(day=0, ward_id=wards[0], occupied=2).dumps()), "day_closed"),
        ((streamed, forged_transfer.key().encode(), forged_transfer.dumps()), "day_closed"),
        ((BATCH_TOPIC, key, chunk_message(run_id, 1, 0, "wards", b"", 0)), "conflict"),
        ((census, day0_census[0][1], WardCensus(day=1, ward_id=wards[0], occupied=9).dumps()), "conflict"),
    ]
    open_day = [
        (BATCH_TOPIC, key, second[0]),
        (census, day0_census[0][1], WardCensus(day=1, ward_id=wards[0], occupied=8).dumps()),
    ]

    copies = [(BATCH_TOPIC, key, first[0]), (BATCH_TOPIC, key, plain_copy)]
    sent = _store_messages(settings, [day0_all, open_day, day0_all + copies + [m for m, _ in refused]])

    with psycopg.connect(database_url) as conn:
        letters = {
            (topic, offset): kind
            for topic, offset, kind in conn.execute(
                'SELECT topic, "offset", kind FROM dead_letters'
            ).fetchall()
        }
        complete = conn.execute("SELECT sim_day FROM sim_days WHERE completed_at IS NOT NULL").fetchall()
        stored = conn.execute("SELECT count(*) FROM ingested_chunks WHERE sim_day = 0").fetchone()[0]
        occupied = conn.execute(
            "SELECT sim_day, occupied FROM ward_census WHERE ward_id = %s ORDER BY 1", (wards[0],)
        ).fetchall()
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("icd10_codes", "wards")
        }
        transfers_stored = conn.execute("SELECT count(*) FROM transfers").fetchone()[0]
    tail = sent[len(sent) - len(refused) :]
    assert complete == [(0,)]
    assert letters == {(m.topic, m.offset): kind for m, (_, kind) in zip(tail, refused, strict=True)}
    assert stored == len(first) - 1 and occupied == [(0, 1), (1, 8)]
    assert counts == {table: day0.row_counts()[table] for table in counts}  # nothing forged is stored
    assert transfers_stored == day0.row_counts()["transfers"]


def test_migration_0009_gives_the_dead_letters_stored_before_it_a_kind_and_a_day(database_url, tmp_path):
    _migrate_before(database_url, tmp_path, 9)
    old = [  # (topic, partition, offset, row_number, reason) as the sink wrote them before 0009
        ("t.transfers.streamed", -1, 41, 0, "streamed transfer 41 is not in the batch of day 12"),
        ("t.records.batch", 0, 7, 3, "lab_results: invalid input syntax for type bigint"),
        (
            "t.records.batch",
            0,
            8,
            0,
            "chunk 5/4 (diagnoses) names rows of chunks not stored yet: it came out of order and is"
            " stored when the generator sends day 5 again",
        ),
        ("t.transfers.streamed", 2, 9, 0, "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
    ]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO dead_letters (topic, partition, "offset", row_number, reason, payload,'
            " payload_bytes) VALUES (%s, %s, %s, %s, %s, '', 0)",
            old,
        )

    assert db.migrate(database_url) == [m.name for m in db.migrations() if m.version >= 9]

    with psycopg.connect(database_url) as conn:
        found = conn.execute('SELECT "offset", kind, sim_day FROM dead_letters ORDER BY "offset"').fetchall()
        assert found == [
            (7, "bad_row", None),
            (8, "out_of_order", 5),
            (9, "unclassified", None),
            (41, "unconfirmed_stream", 12),
        ]
        with pytest.raises(psycopg.errors.NotNullViolation):  # new rows name their kind
            conn.execute(
                'INSERT INTO dead_letters (topic, partition, "offset", reason, payload, payload_bytes)'
                " VALUES ('t', 0, 1, 'r', '', 0)"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                'INSERT INTO dead_letters (topic, partition, "offset", kind, reason, payload, payload_bytes)'
                " VALUES ('t', 0, 1, 'misc', 'r', '', 0)"
            )


def test_a_dead_letter_whose_reason_postgresql_cannot_hold_is_stored_with_that_text_escaped(
    two_days, database_url
):
    """A NUL or a lone surrogate in a relayed dead letter's reason would make PostgreSQL refuse
    the whole buffer, again at every redelivery: the sink stores it escaped instead."""
    settings, _, _, _ = two_days
    dead_topic = TopicRole.DEAD_LETTERS.topic(settings.topic_prefix)
    occupancy = TopicRole.OCCUPANCY.topic(settings.topic_prefix)
    topics = {**TOPICS, dead_topic: TopicRole.DEAD_LETTERS}
    letters = [
        encode_dead_letter(occupancy, 0, offset, b"7", reason, b"{}")
        for offset, reason in enumerate(["ward\0 unknown", "ward \ud800 unknown"])
    ]

    async def run() -> None:
        sink = PostgresSink(settings, topics)
        await sink.on_start()
        try:
            await sink.store([Incoming(dead_topic, 0, i, value, b"7") for i, value in enumerate(letters)])
        finally:
            await sink.on_stop()

    asyncio.run(run())
    with psycopg.connect(database_url) as conn:
        reasons = conn.execute('SELECT reason FROM dead_letters ORDER BY "offset"').fetchall()
    assert reasons == [("ward\\x00 unknown",), ("ward \\ud800 unknown",)]


NATIONAL_ID_INDEX = (
    "SELECT i.indisunique AND i.indisvalid FROM pg_index i"
    " WHERE i.indexrelid = to_regclass('patients_national_id_key')"
)


def test_the_national_id_index_comes_with_day_0s_last_patients_and_refuses_a_later_duplicate(
    two_days, database_url
):
    settings, run_id, day0, _ = two_days
    first = encode_day(run_id, day0)
    patients = [i for i, m in enumerate(first) if batch.parse_batch_message(m).header.table == "patients"]
    assert len(patients) > 1  # the catchment comes in several chunks, here in two buffers
    rows = batch.parse_batch_message(first[patients[0]]).payload.splitlines(keepends=True)

    def index() -> list:
        with psycopg.connect(database_url) as conn:
            return conn.execute(NATIONAL_ID_INDEX).fetchall()

    _store(settings, [first[: patients[-1]]])
    assert index() == []  # not while day 0's patients are still arriving
    _store(settings, [first[patients[-1] :]])
    assert index() == [(True,)]

    # a later day's patient with a stored national id is a bad row; one with a new id is stored
    fields = rows[0].rstrip(b"\n").split(b"\t")
    twin = b"\t".join([b"900001", fields[1], *fields[2:-1], b"1"]) + b"\n"
    fresh = b"\t".join([b"900002", b"0001015800089", *fields[2:-1], b"1"]) + b"\n"
    (result,) = _store(settings, [[chunk_message(run_id, 1, 0, "patients", twin + fresh, 2)]])

    with psycopg.connect(database_url) as conn:
        letters = conn.execute("SELECT kind, row_number, table_name, reason FROM dead_letters").fetchall()
        stored = conn.execute("SELECT patient_id FROM patients WHERE sim_day = 1").fetchall()
    assert result.dead_letters == 1 and stored == [(900002,)]
    ((kind, row, table, reason),) = letters
    assert (kind, row, table) == ("bad_row", 1, "patients") and "patients_national_id_key" in reason

    # deleting everything stored (run --reset) drops it: day 0 loads without it again
    with db.connect(database_url) as conn:
        db.reset(conn)
        db.ensure_run(conn, run_id, sim.HospitalConfig.from_settings(settings).to_json())
    assert index() == []
    _store(settings, [first])
    assert index() == [(True,)]


def test_migration_0012_keeps_the_national_id_constraint_of_a_database_that_holds_patients(
    database_url, tmp_path
):
    _migrate_before(database_url, tmp_path, 12)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO patients VALUES"
            " (1, '0001015800089', 'A', 'B', 'M', '2000-01-01', '1 Main Rd', 'Soweto', '1804', 0)"
        )
    db.migrate(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(NATIONAL_ID_INDEX).fetchall() == [(True,)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO patients VALUES"
                " (2, '0001015800089', 'C', 'D', 'F', '2000-01-01', '2 Main Rd', 'Soweto', '1804', 0)"
            )
