"""The ``hospital-stream`` group and what its commands share (settings, errors, connections).

The commands live beside it by area: ``stack.py`` (stack, db, settings), ``run.py`` (run,
worker) and ``data.py`` (status, plan, validate, dlq, export); ``__init__`` registers them.

Errors meant for people (:class:`HospitalStreamError`) print as one line and exit 1; click's
own usage errors exit 2. Nothing here imports the Faust app until ``run`` needs it, so the
other commands start fast and never touch Kafka unless they must.

Each command connects with the least it needs: migrations and ``run --reset`` as the database
owner (``Settings.admin_url``), the worker and ``dlq replay`` as the writer login
(``database_url``), and ``status``, ``validate``, ``export`` and ``dlq list`` as the read-only
login (``reader_url``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from hospital_stream import db
from hospital_stream.devstack import stack
from hospital_stream.errors import HospitalStreamError
from hospital_stream.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env().replace(**{k: v for k, v in overrides.items() if v is not None})


def friendly_errors(fun: F) -> F:
    """Turn the project's errors into one line on stderr and exit status 1."""

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fun(*args, **kwargs)
        except HospitalStreamError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hospital-stream")
def main() -> None:
    """A simulated state hospital streamed through Kafka and Faust into PostgreSQL.

    Every setting comes from HOSPITAL_* environment variables (see `hospital-stream settings`);
    with none set, everything runs on the embedded local stack.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def _embedded_postgres(settings: Settings) -> Iterator[None]:
    """On the embedded stack, PostgreSQL runs for the command if it is not running already
    (and stops again afterwards)."""
    started = stack.up(settings, only=["postgres"]) if settings.embedded else []
    try:
        yield
    finally:
        if started:
            stack.down(settings, only=started)


@contextlib.contextmanager
def _database(settings: Settings, *, write: bool = False) -> Iterator[Any]:
    """A connection to the run's migrated database: as the read-only login, or as the worker's
    login when the command must ``write`` rows."""
    url = settings.database_url if write else settings.reader_url
    with _embedded_postgres(settings), db.connect(url) as conn:
        db.require_schema(conn)
        yield conn


def _migrate(settings: Settings) -> list[str]:
    """Apply pending migrations as the owner, then make sure the worker's and the reader's
    logins exist in their group roles; return the migrations applied."""
    applied = db.migrate(settings.admin_url)
    with db.connect(settings.admin_url, autocommit=True) as conn:
        for line in db.ensure_logins(conn, settings.database_url, settings.reader_url):
            click.echo(line)
    return applied


def _plan(settings: Settings, days: int) -> dict[str, Any]:
    from hospital_stream import sim  # imported here: they load NumPy and the model
    from hospital_stream.tools import plan

    return plan.cached_estimate(sim.HospitalConfig.from_settings(settings), days, settings.home / "plans")
