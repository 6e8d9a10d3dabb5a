"""The dead-letter store: listing dead letters, and replaying them (whole messages go back to
their topic; single rows are written again)."""

from __future__ import annotations

from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from hospital_stream.errors import DatabaseError, HospitalStreamError
from hospital_stream.settings import Settings


def newest(conn: psycopg.Connection[Any], limit: int, show_all: bool) -> list[dict[str, Any]]:
    """Dead letters newest first, as rows by column name: those not replayed yet, or ``show_all``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            'SELECT dead_letter_id, topic, partition, "offset", row_number, payload_bytes, kind,'
            " sim_day, reason, replayed_at FROM dead_letters WHERE %s OR replayed_at IS NULL"
            " ORDER BY dead_letter_id DESC LIMIT %s",
            (show_all, limit),
        ).fetchall()


def count_not_replayed(conn: psycopg.Connection[Any]) -> int:
    """How many dead letters wait to be replayed."""
    total = conn.execute("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL").fetchone()
    return total[0] if total else 0


def pending(conn: psycopg.Connection[Any], ids: tuple[int, ...], replay_all: bool) -> list[tuple[Any, ...]]:
    """The dead letters to replay (``ids``, or every one not replayed yet), oldest first."""
    return conn.execute(
        "SELECT dead_letter_id, topic, message_key, row_number, table_name, payload, payload_bytes"
        " FROM dead_letters WHERE replayed_at IS NULL AND (%s OR dead_letter_id = ANY(%s))"
        " ORDER BY dead_letter_id",
        (replay_all, list(ids)),
    ).fetchall()


def mark_replayed(conn: psycopg.Connection[Any], done: list[int]) -> None:
    """Note that these dead letters were replayed."""
    conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE dead_letter_id = ANY(%s)", (done,))


async def replay(settings: Settings, letters: list[Any]) -> list[int]:
    """Send whole messages back to their topics and write single rows again."""
    from aiokafka import AIOKafkaProducer

    from hospital_stream.schema import TABLES
    from hospital_stream.sink import RowsMissing, apply_rows

    done = []
    messages = [row for row in letters if row[3] == 0]
    if messages:
        producer = AIOKafkaProducer(
            bootstrap_servers="{}:{}".format(*settings.kafka_address),
            max_batch_size=1 if settings.embedded else 16384,
            max_request_size=2 * 1024 * 1024,
        )
        try:
            await producer.start()
        except Exception as exc:
            raise HospitalStreamError(f"cannot reach the broker at {settings.kafka_url}: {exc}") from exc
        try:
            for letter_id, topic, key, _, _, payload, size in messages:
                if len(payload) < size:
                    click.echo(
                        f"{letter_id}: only the first {len(payload)} of {size} bytes were kept; skipped"
                    )
                    continue
                await producer.send_and_wait(topic, bytes(payload), key=bytes(key) if key else None)
                done.append(letter_id)
        finally:
            await producer.stop()
    rows = [row for row in letters if row[3] > 0]
    if rows:
        try:
            conn = await psycopg.AsyncConnection.connect(settings.database_url)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {str(exc).splitlines()[0]}") from exc
        async with conn:
            for letter_id, _, _, _, table, payload, _ in rows:
                try:
                    async with conn.transaction():
                        await apply_rows(conn, TABLES[table], bytes(payload), 1)
                    done.append(letter_id)
                except (psycopg.DataError, psycopg.IntegrityError, RowsMissing) as exc:
                    click.echo(f"{letter_id}: still rejected: {str(exc).splitlines()[0]}")
    return done
