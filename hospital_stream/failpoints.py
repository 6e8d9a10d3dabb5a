"""Failpoints: named places in the worker where a test makes it crash or freeze on purpose.

``HOSPITAL_FAILPOINT=point[:nth[:kill|pause]]`` arms one point (see :data:`POINTS`): at its
``nth`` hit (default 1) the process SIGKILLs itself (``kill``, the default) or SIGSTOPs itself
(``pause``: the test does what it wants meanwhile, then sends SIGCONT). With
``HOSPITAL_FAILPOINT_LOG=path``, every hit of the armed point appends one JSON line (point, hit
count, simulated day when known, pid, time, and the action at the nth hit), flushed, and
fsynced before the action, so the test can read where its fault landed.

Unarmed, :func:`hit` costs one global lookup and a comparison (about 20 ns; see
docs/architecture.md). This module imports nothing of the app and no Faust or psycopg, so any
layer may call it; the worker arms it once, at start, from its Settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

#: every named point, and where it is
POINTS = {
    "sink.mid_copy": "in the middle of a batch chunk's COPY (rows sent, COPY not ended)",
    "sink.before_commit": "after a buffer's COPYs, before its COMMIT",
    "sink.after_commit": "after a buffer's COMMIT, before its Kafka acknowledgement",
    "generator.before_closing": "between a day's chunks and its closing message",
    "generator.day0_chunks": "at each chunk of day 0 the generator sends",
    "rebalance.assigned": "in the partitions-assigned callback",
    "rebalance.revoked": "in the partitions-revoked callback",
}
ACTIONS = ("kill", "pause")


@dataclasses.dataclass(frozen=True)
class Failpoint:
    """One armed point: what happens at its ``nth`` hit."""

    point: str
    nth: int = 1
    action: str = "kill"

    def __str__(self) -> str:
        return f"{self.point}:{self.nth}:{self.action}"


def parse(text: str) -> Failpoint | None:
    """``point[:nth[:kill|pause]]`` (empty: None); ValueError naming what is wrong."""
    if not text.strip():
        return None
    point, _, rest = text.strip().partition(":")
    nth_text, _, action = rest.partition(":")
    if point not in POINTS:
        raise ValueError(f"unknown failpoint {point!r}; known: {', '.join(POINTS)}")
    if nth_text and not (nth_text.isdigit() and int(nth_text) >= 1):
        raise ValueError(f"the hit count {nth_text!r} must be a whole number of at least 1")
    if action and action not in ACTIONS:
        raise ValueError(f"the action {action!r} must be one of {', '.join(ACTIONS)}")
    return Failpoint(point, int(nth_text or 1), action or "kill")


_armed: Failpoint | None = None
_log: Path | None = None
_hits = 0


def arm(failpoint: Failpoint | None, log: Path | None = None) -> None:
    """Arm ``failpoint`` (None disarms), counting its hits from 0 and logging them to ``log``."""
    global _armed, _log, _hits
    _armed, _log, _hits = failpoint, log, 0


def hit(point: str, day: int | None = None) -> None:
    """Pass ``point`` (``day``: the simulated day it concerns, when known)."""
    if _armed is None or _armed.point != point:
        return
    _fire(_armed, day)


def _fire(armed: Failpoint, day: int | None) -> None:
    global _hits
    _hits += 1
    action = armed.action if _hits == armed.nth else None
    if _log is not None:
        line = {"point": armed.point, "hit": _hits, "day": day, "pid": os.getpid(), "time": time.time()}
        if action:
            line["action"] = action
        with _log.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
            out.flush()
            if action:
                os.fsync(out.fileno())
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once the test sends SIGCONT
