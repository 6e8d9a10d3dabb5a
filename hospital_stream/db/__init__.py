"""PostgreSQL: connections, the packaged migrations and their runner, the least-privilege
logins, and the queries the CLI, the generator and the tools share."""

from hospital_stream.db.connection import connect, first_line
from hospital_stream.db.migrations import (
    SQL_DIR,
    Migration,
    migrate,
    migrations,
    pending_migrations,
    require_schema,
    reset,
)
from hospital_stream.db.queries import (
    INDEX_NATIONAL_IDS,
    LAST_COMPLETE_DAY,
    check_run_config,
    checkpoint_after,
    ensure_run,
    last_complete_day,
    table_row_counts,
)
from hospital_stream.db.roles import READER_ROLE, WRITER_ROLE, ensure_logins

__all__ = [
    "INDEX_NATIONAL_IDS",
    "LAST_COMPLETE_DAY",
    "READER_ROLE",
    "SQL_DIR",
    "WRITER_ROLE",
    "Migration",
    "check_run_config",
    "checkpoint_after",
    "connect",
    "ensure_logins",
    "ensure_run",
    "first_line",
    "last_complete_day",
    "migrate",
    "migrations",
    "pending_migrations",
    "require_schema",
    "reset",
    "table_row_counts",
]
