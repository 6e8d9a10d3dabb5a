"""Start and stop the embedded local stack: the Tansu broker and a PostgreSQL server.

All state lives under ``settings.home``: ``broker.pid``/``broker.log`` for the broker,
``pgdata/`` (with PostgreSQL's own ``postmaster.pid``) and ``postgres.log`` for the database.
A process counts as ours only when its PID file is under home *and* ``/proc/PID/cmdline`` still
names our binary with our arguments, so a reused PID is never signalled.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable
from pathlib import Path

from hospital_stream.devstack.broker import _broker_pid, _down_broker, _up_broker
from hospital_stream.devstack.postgres import _down_postgres, _postgres_pid, _up_postgres, find_pg_bin
from hospital_stream.devstack.processes import _host_port, _locked, _make_dirs, _paths
from hospital_stream.errors import StackError
from hospital_stream.settings import Settings

__all__ = ["SERVICES", "ServiceStatus", "down", "env_lines", "find_pg_bin", "status", "up"]

SERVICES = ("postgres", "broker")


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """Whether one service of the embedded stack runs, and where to look at it."""

    name: str
    running: bool
    pid: int | None
    address: str
    log_file: Path


def up(settings: Settings, only: Iterable[str] | None = None) -> list[str]:
    """Start whichever of PostgreSQL and the broker (or of ``only``) is not running; return
    the names started."""
    names = _service_names(only)
    paths = _paths(settings)
    _make_dirs(paths.home)
    starters = {"postgres": _up_postgres, "broker": _up_broker}
    with _locked(paths):
        return [name for name in SERVICES if name in names and starters[name](settings, paths)]


def down(settings: Settings, only: Iterable[str] | None = None) -> list[str]:
    """Stop our services (default: PostgreSQL, then the broker); return the names stopped."""
    names = _service_names(only)
    paths = _paths(settings)
    if not paths.home.is_dir():
        return []
    stoppers = {"postgres": _down_postgres, "broker": _down_broker}
    with _locked(paths):
        return [name for name in names if stoppers[name](paths)]


def _service_names(only: Iterable[str] | None) -> list[str]:
    names = list(dict.fromkeys(SERVICES if only is None else only))
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise StackError(f"unknown service {unknown[0]!r}; expected one of {', '.join(SERVICES)}")
    return names


def status(settings: Settings) -> dict[str, ServiceStatus]:
    """For "postgres" and "broker": running or not, PID, address and log file."""
    paths = _paths(settings)
    pg_pid = _postgres_pid(paths)
    broker_pid = _broker_pid(paths)
    return {
        "postgres": ServiceStatus(
            "postgres",
            pg_pid is not None,
            pg_pid,
            _host_port(*settings.database_address),
            paths.postgres_log,
        ),
        "broker": ServiceStatus(
            "broker",
            broker_pid is not None,
            broker_pid,
            _host_port(*settings.kafka_address),
            paths.broker_log,
        ),
    }


def env_lines(settings: Settings) -> list[str]:
    """Shell ``export`` lines that point a shell (and psql) at this stack."""
    values = {
        "HOSPITAL_HOME": str(settings.home),
        "HOSPITAL_KAFKA_URL": settings.kafka_url,
        "HOSPITAL_DATABASE_URL": settings.database_url,
        "HOSPITAL_ADMIN_DATABASE_URL": settings.admin_url,
        "HOSPITAL_READER_DATABASE_URL": settings.reader_url,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
