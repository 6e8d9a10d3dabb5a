"""What an export is asked for: the format, the tables or resource types, the dates and the
output folder, validated into an :class:`ExportPlan` before anything connects."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from hospital_stream import schema
from hospital_stream.errors import ConfigError
from hospital_stream.model.calendar import SAST

FORMATS = ("csv", "parquet", "fhir")
EXPORT_TABLES = schema.DATA_TABLES
RESOURCE_TYPES = (
    "Patient",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
)


@dataclasses.dataclass(frozen=True)
class DateRange:
    """Inclusive dates (SAST); either end may be open."""

    first: dt.date | None = None
    last: dt.date | None = None

    def __bool__(self) -> bool:
        return self.first is not None or self.last is not None

    def instants(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The half-open interval [start, end) of instants the dates cover."""
        start = dt.datetime.combine(self.first, dt.time(), SAST) if self.first else None
        end = dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), SAST) if self.last else None
        return start, end

    def sim_days(self, start_date: dt.date) -> tuple[int | None, int | None]:
        """The inclusive range of simulated day numbers, for a run that began on ``start_date``."""
        first = (self.first - start_date).days if self.first else None
        last = (self.last - start_date).days if self.last else None
        return first, last


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """A validated export request."""

    fmt: str
    out_dir: Path
    names: tuple[str, ...]  # tables (csv, parquet) or resource types (fhir)
    dates: DateRange = DateRange()


def parse_format(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {text!r}; choose from {', '.join(FORMATS)}")
    return fmt


def parse_names(fmt: str, values: Sequence[str]) -> tuple[str, ...]:
    """Tables (csv, parquet) or FHIR resource types (fhir) from repeated or comma-separated
    ``--tables`` values, in export order; all of them when none is given."""
    valid = RESOURCE_TYPES if fmt == "fhir" else EXPORT_TABLES
    asked = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not values:
        return valid
    if not asked:
        raise ConfigError("--tables names nothing; leave it out to export everything")
    by_lower = {name.lower(): name for name in valid}
    unknown = [name for name in asked if name.lower() not in by_lower]
    if unknown:
        what = "resource type" if fmt == "fhir" else "table"
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(valid)}")
    chosen = {by_lower[name.lower()] for name in asked}
    return tuple(name for name in valid if name in chosen)


def parse_date(option: str, text: str | None) -> dt.date | None:
    if text is None or not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date; write YYYY-MM-DD") from None


def parse_range(first: str | None, last: str | None) -> DateRange:
    dates = DateRange(parse_date("--from", first), parse_date("--to", last))
    if dates.first and dates.last and dates.first > dates.last:
        raise ConfigError(f"--from {dates.first} is after --to {dates.last}")
    return dates


def prepare_out_dir(path: Path) -> Path:
    """Create the output folder if needed and prove it is writable."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to {path}: {exc.strerror or exc}") from exc
    return path


def plan(
    fmt: str, out_dir: str | Path, tables: Sequence[str], first: str | None, last: str | None
) -> ExportPlan:
    """Validate every option (before anything connects), and create the output folder."""
    fmt = parse_format(fmt)
    names = parse_names(fmt, tables)
    dates = parse_range(first, last)
    return ExportPlan(fmt, prepare_out_dir(Path(out_dir)), names, dates)
