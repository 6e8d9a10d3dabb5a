"""The one place configuration is read: ``HOSPITAL_*`` environment variables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from hospital_stream import failpoints
from hospital_stream.errors import ConfigError

T = TypeVar("T")

PREFIX = "HOSPITAL_"
DEFAULT_KAFKA_URL = "kafka://127.0.0.1:19092"
# Least privilege: the worker writes as a member of hospital_writer, the read-only commands read
# as a member of hospital_reader (both group roles come from sql/0004), and only migrations and
# `run --reset` connect as the database owner.
DEFAULT_WORKER_USER = "hospital_worker"
DEFAULT_ADMIN_USER = "hospital"
DEFAULT_READER_USER = "hospital_readonly"
DEFAULT_DATABASE_URL = f"postgresql://{DEFAULT_WORKER_USER}@127.0.0.1:15432/hospital"
#: wall-clock seconds between two live-transfer slots at speed 1 (the generator's schedule)
STREAM_SLOT_SECONDS = 180.0


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _parse_positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _parse_non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise ValueError("must be a whole number of at least 0")
    return value


def _parse_positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not value > 0:
        raise ValueError("must be a number above 0")
    return value


def parse_speed(text: str) -> float | None:
    """Parse a speed factor: a number above 0, or ``max`` (returned as None)."""
    if text.strip().lower() == "max":
        return None
    try:
        return _parse_positive_float(text)
    except ValueError as exc:
        raise ValueError("must be a number above 0 or 'max'") from exc


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError("must be a date like 2020-01-01") from None


def _parse_name(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("use letters, digits, '-' and '_' only")
    return text


def _parse_optional_day(text: str) -> int | None:
    return None if text.strip() == "" else _parse_non_negative_int(text)


def _parse_url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a URL like {schemes[0]}://host:port/...")
        return text

    return parse


def _parse_optional_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    parse_url = _parse_url(schemes)
    return lambda text: None if text.strip() == "" else parse_url(text)


def with_user(url: str, user: str) -> str:
    """``url`` (a postgresql:// URL) connecting as ``user``, without the original password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}@{host}"))


def _field(env: str, default: str, parse: Callable[[str], Any], doc: str, **kwargs: Any) -> Any:
    """A settings field read from ``HOSPITAL_<env>``, parsed with ``parse``."""
    return dataclasses.field(
        default=parse(default),
        metadata={"env": PREFIX + env, "default": default, "parse": parse, "doc": doc},
        **kwargs,
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the app, the CLI and the embedded stack need to know."""

    home: Path = _field(
        "HOME",
        ".hospital",
        lambda s: Path(s).expanduser().absolute(),
        "folder holding the embedded broker's and PostgreSQL's state and logs",
    )
    kafka_url: str = _field(
        "KAFKA_URL",
        DEFAULT_KAFKA_URL,
        _parse_url(("kafka",)),
        "Kafka bootstrap server (the embedded broker listens here when HOSPITAL_EMBEDDED)",
    )
    database_url: str = _field(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        _parse_url(("postgresql", "postgres")),
        "the worker's PostgreSQL URL: a login in hospital_writer, which reads and writes rows only "
        "(the embedded server listens here when HOSPITAL_EMBEDDED)",
        repr=False,
    )
    admin_database_url: str | None = _field(
        "ADMIN_DATABASE_URL",
        "",
        _parse_optional_url(("postgresql", "postgres")),
        f"the database owner's URL, for migrations, `run --reset` and creating the logins "
        f"(empty: HOSPITAL_DATABASE_URL as user {DEFAULT_ADMIN_USER}, no password)",
        repr=False,
    )
    reader_database_url: str | None = _field(
        "READER_DATABASE_URL",
        "",
        _parse_optional_url(("postgresql", "postgres")),
        f"a read-only login in hospital_reader, for status, validate, export and dlq list "
        f"(empty: HOSPITAL_DATABASE_URL as user {DEFAULT_READER_USER}, no password)",
        repr=False,
    )
    embedded: bool = _field(
        "EMBEDDED",
        "true",
        _parse_bool,
        "true: start/use the local Tansu broker and PostgreSQL and apply their workarounds; "
        "false: a real Kafka cluster and PostgreSQL server",
    )
    app_id: str = _field(
        "APP_ID",
        "hospital-stream",
        _parse_name,
        "Faust app id: consumer group and prefix of changelog topics",
    )
    topic_prefix: str = _field(
        "TOPIC_PREFIX",
        "hospital",
        _parse_name,
        "first part of every topic name (<prefix>.transfers.streamed, ...); runs sharing a broker "
        "need their own prefix and their own HOSPITAL_APP_ID",
    )
    topic_partitions: int = _field(
        "TOPIC_PARTITIONS",
        "1",
        _parse_positive_int,
        "partitions of every topic (workers share them)",
    )
    web_host: str = _field("WEB_HOST", "127.0.0.1", str, "bind address of the worker's web view")
    web_port: int = _field("WEB_PORT", "6066", _parse_positive_int, "port of the worker's web view")
    seed: int = _field("SEED", "2020", _parse_non_negative_int, "simulation seed")
    start_date: dt.date = _field(
        "START_DATE",
        "2020-01-01",
        _parse_date,
        "first simulated day",
    )
    schedule_days: int = _field(
        "SCHEDULE_DAYS",
        "864",
        _parse_positive_int,
        "length of the full schedule in simulated days (one day per 15 minutes at speed 1)",
    )
    speed: float | None = _field(
        "SPEED",
        "1",
        parse_speed,
        "speed factor: 1 is the real schedule (3 transfers per 3 minutes, a day per 15 minutes); "
        "'max' runs as fast as the sink absorbs",
    )
    run_until_day: int | None = _field(
        "RUN_UNTIL_DAY",
        "",
        _parse_optional_day,
        "stop generating before this simulated day number (empty: the end of the schedule)",
    )
    beds: int = _field("BEDS", "1800", _parse_positive_int, "staffed beds of the hospital")
    population: int = _field(
        "POPULATION",
        "5000000",
        _parse_positive_int,
        "people in the catchment population (stored as the patients table on day 0)",
    )
    max_unsunk_days: int = _field(
        "MAX_UNSUNK_DAYS",
        "12",
        _parse_positive_int,
        "backpressure: days produced to Kafka but not yet stored before the generator waits",
    )
    sink_buffer_messages: int = _field(
        "SINK_BUFFER_MESSAGES",
        "200",
        _parse_positive_int,
        "messages the sink buffers before it writes one transaction",
    )
    sink_flush_seconds: float = _field(
        "SINK_FLUSH_SECONDS",
        "0.25",
        _parse_positive_float,
        "longest time a record waits in the sink's buffer",
    )

    db_outage_seconds: float = _field(
        "DB_OUTAGE_SECONDS",
        "600",
        _parse_positive_float,
        "how long the sink keeps retrying an unreachable PostgreSQL before the worker stops",
    )
    stall_seconds: float = _field(
        "STALL_SECONDS",
        "300",
        _parse_positive_float,
        "a worker whose sink stores nothing this long while it has work exits 70 (at least 3 stream slots)",
    )
    failpoint: failpoints.Failpoint | None = _field(
        "FAILPOINT",
        "",
        failpoints.parse,
        "for fault tests: point[:nth[:kill|pause]] makes the worker SIGKILL or SIGSTOP itself at "
        "the nth hit of that point (docs/architecture.md, failpoints); empty: none",
    )
    failpoint_log: Path | None = _field(
        "FAILPOINT_LOG",
        "",
        lambda s: Path(s).expanduser().absolute() if s.strip() else None,
        "for fault tests: a file where each hit of the armed failpoint appends a JSON line",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata["env"]
            if name in env:
                try:
                    values[field.name] = field.metadata["parse"](env[name])
                except ValueError as exc:
                    raise ConfigError(f"{name}={env[name]!r}: {exc}") from exc
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The ``HOSPITAL_*`` variables that reproduce these settings."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                text = "max" if field.name == "speed" else ""
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[field.metadata["env"]] = text
        return env

    @property
    def stall_limit(self) -> float:
        """How long a worker may store nothing before it counts as stalled: HOSPITAL_STALL_SECONDS,
        but at least three stream slots at this speed, so that a slow run's quiet is no stall."""
        if self.speed is None:
            return self.stall_seconds
        return max(self.stall_seconds, 3 * STREAM_SLOT_SECONDS / self.speed)

    @property
    def kafka_address(self) -> tuple[str, int]:
        parts = urlsplit(self.kafka_url)
        return parts.hostname or "127.0.0.1", parts.port or 9092

    @property
    def admin_url(self) -> str:
        """The owner's URL: HOSPITAL_ADMIN_DATABASE_URL, or derived from HOSPITAL_DATABASE_URL."""
        return self.admin_database_url or with_user(self.database_url, DEFAULT_ADMIN_USER)

    @property
    def reader_url(self) -> str:
        """The read-only URL: HOSPITAL_READER_DATABASE_URL, or derived from HOSPITAL_DATABASE_URL."""
        return self.reader_database_url or with_user(self.database_url, DEFAULT_READER_USER)

    @property
    def database_address(self) -> tuple[str, int]:
        parts = urlsplit(self.database_url)
        return parts.hostname or "127.0.0.1", parts.port or 5432

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}/"


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: docs/gen_settings.py and --help."""
    return [
        (f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in dataclasses.fields(Settings)
    ]
