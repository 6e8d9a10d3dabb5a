"""PostgreSQL: connections, the migrations runner over ``sql/NNNN_name.sql``, and the queries
the CLI and the generator share."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from hospital_stream.errors import ConfigError, DatabaseError

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIGRATIONS_LOCK = 0x4853_4D49  # advisory lock id: one migrator at a time

#: tables holding the hospital's records, in the order their foreign keys allow loading
DATA_TABLES = (
    "icd10_codes",
    "lab_tests",
    "medicines",
    "procedure_codes",
    "wards",
    "patients",
    "staff",
    "staff_assignments",
    "bed_requests",
    "admissions",
    "transfers",
    "diagnoses",
    "lab_results",
    "vital_signs",
    "prescriptions",
    "procedures",
    "ward_census",
)
PIPELINE_TABLES = ("simulation", "ingested_chunks", "sim_days", "dead_letters")
#: the group roles of sql/0004: the worker's rights (rows and TEMP only), and read-only rights
WRITER_ROLE = "hospital_writer"
READER_ROLE = "hospital_reader"


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """The migration files, in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise DatabaseError(f"{path.name}: migration files are named NNNN_lower_case_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migrations share a version number in {directory}")
    return found


@contextmanager
def connect(url: str, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
    """A connection, with an unreachable server reported as one readable line."""
    try:
        conn = psycopg.connect(url, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:  # the server went away mid-command
        raise DatabaseError(f"lost the connection to PostgreSQL: {_first_line(exc)}") from exc


def migrate(url: str, directory: Path = SQL_DIR) -> list[str]:
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
                    conn.execute(migration.path.read_text())  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                logger.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        except psycopg.Error as exc:
            raise DatabaseError(f"migration failed: {_first_line(exc)}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATIONS_LOCK,))
    return applied_now


def ensure_logins(conn: psycopg.Connection[Any], writer_url: str, reader_url: str) -> list[str]:
    """Create the worker's and the reader's logins when missing, as members of WRITER_ROLE and
    READER_ROLE; return what was created. Idempotent; run as the owner or a superuser.

    A new login gets its URL's password (none: no password, as on the embedded stack). An
    existing role is left exactly as it is: nothing here widens the rights of a role someone
    made. A missing group role is created without rights (migration 0004 grants them), so this
    may run before the migrations.
    """
    done = []
    for url, group in ((writer_url, WRITER_ROLE), (reader_url, READER_ROLE)):
        info = conninfo_to_dict(url)
        login, password = info.get("user"), info.get("password")
        if not login or _role_exists(conn, login):
            continue  # libpq picks the user, or the role is there already
        try:
            if not _role_exists(conn, group):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
                done.append(f"created group role {group}")
            # CREATE ROLE takes no bind parameters: the password goes in as a quoted literal.
            password_clause = (
                sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL("")
            )
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN{} IN ROLE {}").format(
                    sql.Identifier(login), password_clause, sql.Identifier(group)
                )
            )
            done.append(f"created login {login} in {group}")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot create login {login} in {group}: {_first_line(exc)}; "
                f"a superuser can: CREATE ROLE {login} LOGIN PASSWORD '...' IN ROLE {group}"
            ) from exc
    for line in done:
        logger.info("%s", line)
    return done


def _role_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def pending_migrations(conn: psycopg.Connection[Any], directory: Path = SQL_DIR) -> list[str]:
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


# --- the run and its progress ----------------------------------------------------------------


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
