"""``hospital-stream stack|db|settings``: the embedded stack, migrations, the settings."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import click

from hospital_stream.cli.main import _embedded_postgres, _migrate, _settings, friendly_errors, main
from hospital_stream.devstack import stack
from hospital_stream.errors import ConfigError
from hospital_stream.settings import Settings, documented_settings

# --- the embedded stack ---------------------------------------------------------------------


@main.group("stack")
def stack_group() -> None:
    """Start, stop and inspect the embedded broker and PostgreSQL (127.0.0.1 only)."""


@stack_group.command("up")
@friendly_errors
def stack_up() -> None:
    """Start the embedded broker and PostgreSQL if they are not running."""
    settings = _settings()
    _require_embedded(settings)
    started = stack.up(settings)
    _migrate(settings)
    click.echo(f"started: {', '.join(started)}" if started else "already running")
    _print_stack(settings)


@stack_group.command("down")
@friendly_errors
def stack_down() -> None:
    """Stop the embedded broker and PostgreSQL (the data stays under HOSPITAL_HOME)."""
    stopped = stack.down(_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_group.command("status")
@friendly_errors
def stack_status() -> None:
    """Show whether the embedded services run, where, and their logs."""
    _print_stack(_settings())


@stack_group.command("env")
@friendly_errors
def stack_env() -> None:
    """Print `export HOSPITAL_...` lines: eval "$(hospital-stream stack env)"."""
    for line in stack.env_lines(_settings()):
        click.echo(line)


def _print_stack(settings: Settings) -> None:
    for name, service in stack.status(settings).items():
        state = f"running (pid {service.pid})" if service.running else "stopped"
        click.echo(f"{name:9} {state:22} {service.address:24} log: {service.log_file}")


def _require_embedded(settings: Settings) -> None:
    if not settings.embedded:
        raise ConfigError("HOSPITAL_EMBEDDED=false: the broker and PostgreSQL are not ours to start")


# --- database -------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Schema migrations."""


@db_group.command("migrate")
@friendly_errors
def db_migrate() -> None:
    """Apply pending sql/NNNN_*.sql migrations in order."""
    settings = _settings()
    with _embedded_postgres(settings):
        applied = _migrate(settings)
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@main.command("settings")
def show_settings() -> None:
    """List every HOSPITAL_* setting with its default and current value."""
    settings = Settings.from_env()
    current = settings.to_env()
    derived = {
        "HOSPITAL_ADMIN_DATABASE_URL": settings.admin_url,
        "HOSPITAL_READER_DATABASE_URL": settings.reader_url,
    }
    for name, default, doc in documented_settings():
        value = _hide_password(current[name])
        if not value and name in derived:
            value = f"  # empty, so {_hide_password(derived[name])}"
        click.echo(f"{name}={value}\n    default {default!r}: {doc}")


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
