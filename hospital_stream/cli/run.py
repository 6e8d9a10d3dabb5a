"""``hospital-stream run|worker``: a supervised run, and the Faust worker it starts."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import click

from hospital_stream import db
from hospital_stream.cli.main import _migrate, _plan, _settings, friendly_errors, main
from hospital_stream.devstack import stack, supervisor
from hospital_stream.errors import HospitalStreamError
from hospital_stream.settings import Settings, parse_speed
from hospital_stream.tools import kafka_admin


class _Speed(click.ParamType):
    """A speed factor: a number above 0, or 'max' (kept as the string, since None means unset)."""

    name = "speed"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        try:
            speed = parse_speed(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return "max" if speed is None else speed


@main.command("run")
@click.option("--days", type=click.IntRange(min=1), help="Simulated days to add, then exit 0.")
@click.option(
    "--speed",
    type=_Speed(),
    help="Speed factor (1 = the real 9-day schedule) or 'max'. Default: HOSPITAL_SPEED (1).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Simulation seed (a new run needs --reset).")
@click.option("--reset", is_flag=True, help="Delete everything stored and start again at day 0.")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="The worker's log level.",
)
@friendly_errors
def run(days: int | None, speed: float | str | None, seed: int | None, reset: bool, loglevel: str) -> None:
    """Run the worker in this process: simulate, stream and store until --days are stored.

    Starts the embedded broker and PostgreSQL when they are not running, and stops what it
    started when it ends (Ctrl-C stops it cleanly). Running again resumes where it stopped.
    """
    settings = _settings(seed=seed)
    if speed is not None:
        settings = settings.replace(speed=None if speed == "max" else speed)
    started: list[str] = []
    try:
        if settings.embedded:
            started = stack.up(settings)
            if reset and "broker" not in started:
                stack.down(settings, only=["broker"])  # forget the old run's messages
                stack.up(settings)
        elif reset:
            deleted = kafka_admin.delete_topics(settings)
            click.echo(f"deleted topics: {', '.join(deleted) or 'none'}")
        _migrate(settings)
        with db.connect(settings.admin_url, autocommit=True) as conn:  # the owner may reset
            if reset:
                db.reset(conn)
            db.check_run_config(conn, _hospital_config(settings))
            first_day = db.last_complete_day(conn) + 1
        end_day = settings.schedule_days if days is None else min(settings.schedule_days, first_day + days)
        if first_day >= end_day:
            click.echo(f"the schedule ends at day {settings.schedule_days}: nothing left to run")
            return
        settings = settings.replace(run_until_day=end_day)
        argv = [sys.executable, "-m", "hospital_stream.cli", "worker", "--loglevel", loglevel]
        plan = functools.partial(_planned_bytes, settings)
        drain = functools.partial(kafka_admin.wait_until_drained, settings)
        finished = supervisor.run_worker(settings, first_day, end_day, argv, plan, drain)
    finally:
        if started:
            stack.down(settings, only=list(reversed(started)))
    if days is not None and not finished:
        raise click.exceptions.Exit(1)


def _hospital_config(settings: Settings) -> dict[str, Any]:
    from hospital_stream.model import HospitalConfig  # imported here: it loads NumPy

    return HospitalConfig.from_settings(settings).to_json()


@main.command("worker")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@friendly_errors
def worker(loglevel: str) -> None:
    """Run the Faust worker in the foreground, like ``faust -A hospital_stream.app worker``
    but with quieter logs (``run`` starts it this way). Settings come from HOSPITAL_*."""
    from faust.worker import Worker

    from hospital_stream.app import app

    faust_worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    faust_worker.spinner = None
    # Normal at high speed, so kept out of the logs: Faust warns whenever its producer buffer
    # holds over 100 messages (backpressure), and mode whenever a timer's catch-up work
    # outlasts its interval (the next tick simply continues).
    for name in ("faust.transport.producer", "mode.timers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            reason = faust_worker.crash_reason or f"exit status {exc.code}"
            raise HospitalStreamError(f"the worker stopped after an error: {reason}") from None


def _planned_bytes(settings: Settings) -> float:
    """The bytes a whole run of ``settings`` stores, for the progress line."""
    return float(_plan(settings, settings.schedule_days)["bytes"])
