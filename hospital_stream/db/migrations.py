"""The migrations runner over the packaged ``db/sql/NNNN_name.sql`` files (read through
:mod:`importlib.resources`, so a non-editable install carries them)."""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import re
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from psycopg import sql

from hospital_stream.db.connection import connect, first_line
from hospital_stream.db.queries import UNINDEX_NATIONAL_IDS
from hospital_stream.errors import DatabaseError
from hospital_stream.schema import DATA_TABLES, PIPELINE_TABLES

logger = logging.getLogger(__name__)

SQL_DIR: Traversable = importlib.resources.files("hospital_stream.db") / "sql"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIGRATIONS_LOCK = 0x4853_4D49  # advisory lock id: one migrator at a time


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Traversable


def migrations(directory: Traversable = SQL_DIR) -> list[Migration]:
    """The migration files, in version order."""
    found = []
    for path in sorted((p for p in directory.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise DatabaseError(f"{path.name}: migration files are named NNNN_lower_case_name.sql")
        found.append(Migration(int(match.group(1)), path.name.removesuffix(".sql"), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migrations share a version number in {directory}")
    return found


def migrate(url: str, directory: Traversable = SQL_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return their names."""
    applied_now = []
    with connect(url, autocommit=True) as conn:
        if not pending_migrations(conn, directory):
            return []  # nothing to do: also fine for a role that may not change the schema
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATIONS_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations(directory):
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                logger.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        except psycopg.Error as exc:
            raise DatabaseError(f"migration failed: {first_line(exc)}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATIONS_LOCK,))
    return applied_now


def pending_migrations(conn: psycopg.Connection[Any], directory: Traversable = SQL_DIR) -> list[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done = set()
    if exists and exists[0]:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [m.name for m in migrations(directory) if m.version not in done]


def require_schema(conn: psycopg.Connection[Any]) -> None:
    """Fail with a clear line when migrations are missing."""
    pending = pending_migrations(conn)
    if pending:
        raise DatabaseError(
            f"the database lacks migrations {', '.join(pending)}; run `hospital-stream db migrate`"
        )


def reset(conn: psycopg.Connection[Any]) -> None:
    """Delete every stored record and the run itself (the schema stays)."""
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in (*DATA_TABLES, *PIPELINE_TABLES))
    conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))
    conn.execute(UNINDEX_NATIONAL_IDS)  # the sink builds it again after day 0's patients
