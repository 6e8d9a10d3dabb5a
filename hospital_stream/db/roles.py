"""The least-privilege logins: the worker's (rows and TEMP only) and the readers'."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from hospital_stream.db.connection import first_line
from hospital_stream.errors import DatabaseError

logger = logging.getLogger(__name__)

#: the group roles of migration 0004: the worker's rights (rows and TEMP only), and read-only rights
WRITER_ROLE = "hospital_writer"
READER_ROLE = "hospital_reader"


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
        login, password = str(info.get("user") or ""), info.get("password")
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
                f"cannot create login {login} in {group}: {first_line(exc)}; "
                f"a superuser can: CREATE ROLE {login} LOGIN PASSWORD '...' IN ROLE {group}"
            ) from exc
    for line in done:
        logger.info("%s", line)
    return done


def _role_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
