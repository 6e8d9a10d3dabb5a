"""What the benchmarks share: the small arithmetic of their reports (an embedded stack of their
own on free ports comes from :mod:`hospital_stream.devstack.isolated`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from hospital_stream.devstack.isolated import free_port, stack_settings, traversable_tempdir
from hospital_stream.settings import Settings

__all__ = ["free_port", "stack_settings", "traversable_tempdir"]

MB = 1_000_000


def loadavg() -> str:
    """The first three fields of /proc/loadavg ("" where there is none)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def rate(amount: float, seconds: float) -> float:
    """``amount`` per second; NaN when nothing was timed."""
    return amount / seconds if seconds > 0 else math.nan


def num(value: float, digits: int = 0) -> str:
    """A figure for a report: thousands separated, "-" for NaN."""
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def json_ready(value: Any) -> Any:
    """NaN (JSON has none) as null, in nested dicts and lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


def to_json(summary: dict[str, Any]) -> str:
    """A summary as strict JSON text."""
    return json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n"


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_hospital_arguments(parser: argparse.ArgumentParser) -> None:
    """``--beds``, ``--population`` and ``--seed``: overrides of the HOSPITAL_* hospital."""
    parser.add_argument("--beds", type=positive_int, help="staffed beds (default: HOSPITAL_BEDS)")
    parser.add_argument("--population", type=positive_int, help="catchment (default: HOSPITAL_POPULATION)")
    parser.add_argument("--seed", type=non_negative_int, help="simulation seed (default: HOSPITAL_SEED)")


def hospital_settings(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """The HOSPITAL_* settings (of ``env``, default the process's) with the command's overrides."""
    settings = Settings.from_env(env)
    overrides = {k: getattr(args, k) for k in ("beds", "population", "seed") if getattr(args, k) is not None}
    return settings.replace(**overrides)
