"""Connections to PostgreSQL, with an unreachable server reported as one readable line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from hospital_stream.errors import DatabaseError


@contextmanager
def connect(url: str, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
    """A connection, with an unreachable server reported as one readable line."""
    try:
        conn = psycopg.connect(url, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {first_line(exc)}") from exc
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:  # the server went away mid-command
        raise DatabaseError(f"lost the connection to PostgreSQL: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
