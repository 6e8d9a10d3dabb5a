"""The worker's own stall watchdog: a sink that stores nothing for the stall limit while it has
work means a worker that is alive but stuck (waiting on a lock, a consumer that stopped
delivering), and only a new worker gets it going again.

Work is pending while the sink holds a buffer it has not committed, or while the generator holds
days back because too many are sent and not stored. Time while PostgreSQL does not answer does
not count: that is an outage, which the sink rides out for ``HOSPITAL_DB_OUTAGE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from hospital_stream import db
from hospital_stream.errors import HospitalStreamError, WorkerStalled
from hospital_stream.settings import Settings


class StallWatch:
    """When the sink last committed, and since when it has had work without committing."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.limit = settings.stall_limit
        self.clock = clock
        self.last_progress = clock()  # a new worker's stall is counted from its start
        self.pending_since: float | None = None
        self.in_flight = 0

    @contextlib.contextmanager
    def storing(self) -> Iterator[None]:
        """Around one ``PostgresSink.store``: progress when it returns, work pending meanwhile."""
        if self.pending_since is None:
            self.pending_since = self.clock()
        self.in_flight += 1
        try:
            yield
            self.last_progress = self.clock()
        finally:
            self.in_flight -= 1

    def quiet_seconds(self, generator_held: bool) -> float:
        """How long the sink has had work and stored nothing (0 while it has none)."""
        now = self.clock()
        if not (self.in_flight or generator_held):
            self.pending_since = None
            return 0.0
        if self.pending_since is None:
            self.pending_since = now
        return now - max(self.last_progress, self.pending_since)

    async def check(self, generator_held: bool) -> WorkerStalled | None:
        """The stall, once the sink has had work and stored nothing for longer than the limit
        while PostgreSQL answers; None otherwise."""
        quiet = self.quiet_seconds(generator_held)
        if quiet <= self.limit:
            return None
        if not await asyncio.to_thread(self._postgres_answers):
            self.pending_since = self.clock()  # an outage is the sink's to judge, not a stall
            return None
        return WorkerStalled(
            f"the sink stored nothing for {quiet:.0f} s while it had work (limit {self.limit:.0f} s, "
            f"HOSPITAL_STALL_SECONDS); exiting with status {WorkerStalled.exit_code} so that a new "
            "worker starts again from PostgreSQL's last complete day"
        )

    def _postgres_answers(self) -> bool:
        try:
            with db.connect(self.settings.database_url) as conn:
                conn.execute("SELECT 1")
        except HospitalStreamError:
            return False
        return True
