"""The queries the CLI, the generator and the tools share: the run and its progress."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from hospital_stream.errors import ConfigError, DatabaseError
from hospital_stream.schema import DATA_TABLES


def check_run_config(conn: psycopg.Connection[Any], config: dict[str, Any]) -> None:
    """Refuse to mix runs: a database holding a run made with another seed or hospital."""
    row = conn.execute("SELECT config FROM simulation").fetchone()
    if row is None or row[0] == config:
        return
    stored = row[0]
    changed = ", ".join(
        f"{k}: stored {stored.get(k)!r}, asked {v!r}" for k, v in config.items() if stored.get(k) != v
    )
    raise ConfigError(
        f"the database holds a run with other settings ({changed}); "
        "start over with `hospital-stream run --reset` or use those settings"
    )


def ensure_run(conn: psycopg.Connection[Any], run_id: str, config: dict[str, Any]) -> str:
    """The database's run id: the stored one if its configuration matches, else a new run."""
    check_run_config(conn, config)
    conn.execute(
        "INSERT INTO simulation (run_id, config) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (run_id, json.dumps(config)),
    )
    row = conn.execute("SELECT run_id FROM simulation").fetchone()
    assert row is not None
    return str(row[0])


LAST_COMPLETE_DAY = """
    SELECT min(day) - 1 FROM generate_series(0, (SELECT count(*) FROM sim_days)) AS day
    WHERE NOT EXISTS (
        SELECT 1 FROM sim_days WHERE sim_day = day AND completed_at IS NOT NULL
    )
"""


#: builds ``patients_national_id_key``, the national id's unique index, once day 0's catchment is
#: copied: in the same transaction, by a function that runs as the owner (migration 0012)
INDEX_NATIONAL_IDS = "SELECT index_patients_national_id()"
#: and drops it when everything stored is deleted, so that day 0 loads without it again (a
#: database that held patients before 0012 has it as a constraint)
UNINDEX_NATIONAL_IDS = (
    "ALTER TABLE patients DROP CONSTRAINT IF EXISTS patients_national_id_key;"
    " DROP INDEX IF EXISTS patients_national_id_key"
)


def last_complete_day(conn: psycopg.Connection[Any]) -> int:
    """The last day that, with every day before it, is fully stored; -1 when none is."""
    row = conn.execute(LAST_COMPLETE_DAY).fetchone()
    return int(row[0]) if row else -1


def checkpoint_after(conn: psycopg.Connection[Any], day: int) -> bytes:
    row = conn.execute("SELECT checkpoint FROM sim_days WHERE sim_day = %s", (day,)).fetchone()
    if row is None:
        raise DatabaseError(f"no checkpoint stored for day {day}")
    return bytes(row[0])


def table_row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    counts = {}
    for table in DATA_TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[table] = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    return counts
