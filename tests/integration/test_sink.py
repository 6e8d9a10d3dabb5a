"""The sink on a real PostgreSQL, without the broker: what it does with a batch partition that
has a hole (a chunk the broker never took, between two it did) and with the copy sent again."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from hospital_stream import db, sim
from hospital_stream.settings import Settings
from hospital_stream.sink import Incoming, PostgresSink
from hospital_stream.wire import batch
from hospital_stream.wire.batch import encode_day
from hospital_stream.wire.roles import TopicRole

pytestmark = [pytest.mark.integration]

HOSPITAL = {"HOSPITAL_BEDS": "60", "HOSPITAL_POPULATION": "12000", "HOSPITAL_SEED": "7"}
BATCH_TOPIC = "t.records.batch"
TOPICS = {
    "t.transfers.streamed": TopicRole.STREAMED,
    BATCH_TOPIC: TopicRole.BATCH,
    "t.census.daily": TopicRole.CENSUS,
}


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


def test_a_chunk_after_a_hole_is_refused_whole_and_its_copy_sent_again_is_stored(database_url):
    settings = Settings.from_env({"HOSPITAL_DATABASE_URL": database_url, **HOSPITAL})
    config = sim.HospitalConfig.from_settings(settings)
    db.migrate(database_url)
    with db.connect(database_url) as conn:
        run_id = db.ensure_run(conn, "run-a", config.to_json())
    day0, day1 = list(sim.iter_days(config, 2))
    first, second = encode_day(run_id, day0), encode_day(run_id, day1)
    tables = [batch.parse_batch_message(m).header.table for m in second]
    hole = tables.index("admissions")
    assert "diagnoses" in tables[hole:]  # they name the admissions of the missing chunk

    _, refused, again = _store(settings, [first, second[:hole] + second[hole + 1 :], second])

    with psycopg.connect(database_url) as conn:
        letters = conn.execute("SELECT reason FROM dead_letters ORDER BY dead_letter_id").fetchall()
        stored = {
            table: conn.execute(f"SELECT count(*) FROM {table} WHERE sim_day = 1").fetchone()[0]
            for table in ("admissions", "diagnoses", "transfers")
        }
        ledger = conn.execute("SELECT count(*) FROM ingested_chunks WHERE sim_day = 1").fetchone()[0]
    # refused whole, without a ledger entry and without row-by-row dead letters
    assert refused.dead_letters == len(letters) >= 1
    assert all("came out of order" in reason for (reason,) in letters), letters
    # the copy sent again fills the hole and everything after it: nothing of day 1 is lost
    assert again.chunks == len(letters) + 1 and again.dead_letters == 0
    assert ledger == len(second) - 1
    for table, n in stored.items():
        assert n == len(day1.tables[table]), table
