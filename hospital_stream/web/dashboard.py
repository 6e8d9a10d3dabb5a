"""The dashboard's history from PostgreSQL: the ``Dashboard`` service, one panel's queries per
method, and ``WorkerDashboard``, the one the worker builds.

It reads through a small pool of its own that connects as the read-only login (not the sink's
pool: a page left open must never make a store wait for a connection). Queries stay
cheap on a big database: index ranges on ``sim_day`` and primary keys, LIMITs, and the
planner's row estimates instead of counting the big tables. Complete days never change, so the
charts keep what they read of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
from mode import Service
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from hospital_stream import db, schema, services
from hospital_stream.app import app, settings
from hospital_stream.errors import DatabaseError
from hospital_stream.web.panels import (
    CHART_DAYS,
    DAYS_RATE_WINDOW_SECONDS,
    RECONCILIATION_DAYS,
    REPLACEMENT_WINDOW_DAYS,
    RETIREMENT_WINDOW_DAYS,
    ROWS_RATE_WINDOW_SECONDS,
    SECONDS_PER_DAY_AT_SPEED_1,
    DayFigures,
    eta_seconds,
    pair_replacements,
    rate_per_second,
    reconcile,
    retirement_birth_range,
    retires_within,
    turns_65_on,
)

logger = logging.getLogger(__name__)


class DashboardUnavailable(DatabaseError):
    """The dashboard cannot read PostgreSQL right now (its panels show the reason)."""


TABLE_ROWS = """
    SELECT c.relname, greatest(coalesce(s.n_live_tup, 0), c.reltuples, 0)::bigint
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.relkind = 'r' AND c.relname = ANY(%s)
"""

#: streamed transfers that their day's batch did not hold (moved to the dead letters), per day
#: of a range (an index range on dead_letters_kind_day_idx)
UNCONFIRMED_BY_DAY = """
    SELECT sim_day, count(*) FROM dead_letters
    WHERE kind = 'unconfirmed_stream' AND sim_day BETWEEN %s AND %s
    GROUP BY sim_day
"""


#: every dashboard connection: read-only transactions, and no query may run long
CONNECTION_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "autocommit": True,
    "options": "-c default_transaction_read_only=on -c statement_timeout=5000",
}


class Dashboard(Service):
    """The dashboard's read-only pool, the samples behind its rates and its chart cache."""

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pool: AsyncConnectionPool | None = None
        self.login: str | None = None
        self._opening = asyncio.Lock()
        self._failed_at = 0.0
        self._failure = ""
        #: (monotonic seconds, estimated rows, last complete day)
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=2000)
        self.chart_days: dict[int, DayFigures] = {}

    async def on_stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def connection_pool(self) -> AsyncConnectionPool:
        """The open pool: as the read-only login, or, where no such login exists, as the
        worker's login in read-only transactions. Raises DashboardUnavailable."""
        if self.pool is not None:
            return self.pool
        async with self._opening:
            if self.pool is not None:
                return self.pool
            if time.monotonic() - self._failed_at < 5.0:
                raise DashboardUnavailable(self._failure)
            reasons = []
            for url in dict.fromkeys((self.settings.reader_url, self.settings.database_url)):
                user = conninfo_to_dict(url).get("user", "?")
                pool = AsyncConnectionPool(
                    url,
                    open=False,
                    min_size=1,
                    max_size=2,
                    kwargs=CONNECTION_OPTIONS,
                    timeout=5.0,
                    check=AsyncConnectionPool.check_connection,
                    name="hospital-dashboard",
                )
                try:
                    # one attempt first: a login that does not exist fails at once, where the
                    # pool would keep trying until its timeout
                    await (await psycopg.AsyncConnection.connect(url, **CONNECTION_OPTIONS)).close()
                    await pool.open(wait=True, timeout=10.0)
                except psycopg.OperationalError as exc:
                    await pool.close()
                    reasons.append(f"{user}: {db.first_line(exc)}")
                    continue
                self.pool, self.login = pool, str(user)
                logger.info("dashboard reads PostgreSQL as %s", self.login)
                return pool
            self._failed_at, self._failure = time.monotonic(), "; ".join(reasons)
            raise DashboardUnavailable(self._failure)

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pool = await self.connection_pool()
        try:
            async with pool.connection() as conn:
                return await (await conn.execute(query, params)).fetchall()
        except psycopg.OperationalError as exc:  # unreachable, too slow, or no connection free
            raise DashboardUnavailable(db.first_line(exc)) from exc

    async def last_complete_day(self) -> int:
        rows = await self.fetch(db.LAST_COMPLETE_DAY)
        return int(rows[0][0]) if rows and rows[0][0] is not None else -1

    def date_of(self, day: int) -> dt.date:
        return self.settings.start_date + dt.timedelta(days=day)

    # -- panels --

    async def bed_requests(self, day: int) -> dict[int, dict[str, int]]:
        rows = await self.fetch(
            "SELECT ward_id, outcome, count(*) FROM bed_requests WHERE sim_day = %s GROUP BY 1, 2", (day,)
        )
        out: dict[int, dict[str, int]] = {}
        for ward_id, outcome, count in rows:
            out.setdefault(ward_id, {})[outcome] = count
        return out

    async def retirements(self, today: dt.date) -> dict[str, Any]:
        lo, hi = retirement_birth_range(today, RETIREMENT_WINDOW_DAYS)
        rows = await self.fetch(
            "SELECT s.staff_id, s.role, s.specialty, s.birth_date, a.ward_id"
            " FROM staff s LEFT JOIN staff_assignments a ON a.staff_id = s.staff_id AND a.ends_on IS NULL"
            " WHERE s.retired_on IS NULL AND s.birth_date BETWEEN %s AND %s"
            " ORDER BY s.birth_date, s.staff_id",
            (lo, hi),
        )
        upcoming = [
            {
                "staff_id": staff_id,
                "role": role,
                "specialty": specialty,
                "ward_id": ward_id,
                "code": services.wards()[ward_id].code if ward_id in services.wards() else None,
                "retires_on": turns_65_on(birth).isoformat(),
                "days_left": (turns_65_on(birth) - today).days,
            }
            for staff_id, role, specialty, birth, ward_id in rows
            if retires_within(birth, today, RETIREMENT_WINDOW_DAYS)
        ]
        upcoming.sort(key=lambda r: (r["retires_on"], r["staff_id"]))
        return {"window_days": RETIREMENT_WINDOW_DAYS, "count": len(upcoming), "upcoming": upcoming[:25]}

    async def replacements(self, today: dt.date) -> dict[str, Any]:
        since = today - dt.timedelta(days=REPLACEMENT_WINDOW_DAYS)
        retired = await self.fetch(
            "SELECT s.staff_id, s.role, s.specialty, s.retired_on,"
            " (SELECT a.ward_id FROM staff_assignments a WHERE a.staff_id = s.staff_id"
            "  ORDER BY a.starts_on DESC, a.assignment_id DESC LIMIT 1)"
            " FROM staff s WHERE s.retired_on > %s AND s.retired_on <= %s",
            (since, today),
        )
        hired = await self.fetch(
            "SELECT s.staff_id, s.role, s.specialty, s.hired_on, a.ward_id FROM staff s"
            " JOIN staff_assignments a ON a.staff_id = s.staff_id AND a.starts_on = s.hired_on"
            " WHERE s.sim_day > 0 AND s.hired_on > %s AND s.hired_on <= %s",
            (since, today),
        )
        fields = ("staff_id", "role", "specialty", "on", "ward_id")
        pairs = pair_replacements(
            [dict(zip(fields, r, strict=True)) for r in retired],
            [dict(zip(fields, r, strict=True)) for r in hired],
        )
        for pair in pairs:
            pair["retired_on"] = pair["retired_on"].isoformat()
            pair["code"] = (
                services.wards()[pair["ward_id"]].code if pair["ward_id"] in services.wards() else None
            )
        return {"window_days": REPLACEMENT_WINDOW_DAYS, "count": len(pairs), "recent": pairs[:25]}

    async def table_rows(self) -> dict[str, int]:
        rows = await self.fetch(TABLE_ROWS, (list(schema.DATA_TABLES),))
        found = dict(rows)
        return {table: int(found.get(table, 0)) for table in schema.DATA_TABLES}

    async def schedule(self) -> dict[str, Any]:
        last_day = await self.last_complete_day()
        size = (await self.fetch("SELECT pg_database_size(current_database())"))[0][0]
        rows = await self.table_rows()
        total = sum(rows.values())
        now = time.monotonic()
        if not self.samples or now - self.samples[-1][0] >= 1.0:
            self.samples.append((now, total, last_day))
        while self.samples and now - self.samples[0][0] > DAYS_RATE_WINDOW_SECONDS:
            self.samples.popleft()
        recent = [(t, float(r)) for t, r, _ in self.samples if now - t <= ROWS_RATE_WINDOW_SECONDS]
        rows_per_second = rate_per_second(recent)
        days_per_second = rate_per_second([(t, float(d)) for t, _, d in self.samples])
        end_day = min(self.settings.run_until_day or self.settings.schedule_days, self.settings.schedule_days)
        basis = "measured" if days_per_second else None
        if not days_per_second and self.settings.speed:
            days_per_second, basis = self.settings.speed / SECONDS_PER_DAY_AT_SPEED_1, "schedule"
        eta = eta_seconds(last_day, end_day, days_per_second)
        return {
            "sim_day": last_day,
            "sim_date": self.date_of(last_day).isoformat() if last_day >= 0 else None,
            "day_number": last_day + 1,
            "schedule_days": self.settings.schedule_days,
            "end_day": end_day,
            "progress_pct": round(100.0 * (last_day + 1) / self.settings.schedule_days, 1),
            "speed": self.settings.speed,
            "database_bytes": int(size),
            "rows_stored": total,
            "rows_by_table": rows,
            "rows_per_second": None if rows_per_second is None else round(rows_per_second, 1),
            "days_per_second": None if days_per_second is None else round(days_per_second, 4),
            "eta_seconds": None if eta is None else round(eta, 1),
            "eta_basis": basis if eta else None,
        }

    async def dead_letters(self) -> dict[str, Any]:
        total, open_ = (
            await self.fetch("SELECT count(*), count(*) FILTER (WHERE replayed_at IS NULL) FROM dead_letters")
        )[0]
        recent = await self.fetch(
            'SELECT dead_letter_id, topic, partition, "offset", row_number, table_name, kind, sim_day,'
            " left(reason, 300), payload_bytes, received_at FROM dead_letters"
            " ORDER BY dead_letter_id DESC LIMIT 5"
        )
        fields = (
            "id",
            "topic",
            "partition",
            "offset",
            "row_number",
            "table",
            "kind",
            "sim_day",
            "reason",
            "bytes",
            "received_at",
        )
        letters = [dict(zip(fields, row, strict=True)) for row in recent]
        for letter in letters:
            letter["received_at"] = letter["received_at"].isoformat()
        return {"total": total, "open": open_, "recent": letters}

    async def reconciliation(self) -> dict[str, Any]:
        last_day = await self.last_complete_day()
        first = max(0, last_day - RECONCILIATION_DAYS + 1)
        rows = await self.fetch(
            "SELECT sim_day, count(*) FILTER (WHERE seen_in_stream), count(*) FILTER (WHERE seen_in_batch),"
            " count(*) FILTER (WHERE seen_in_stream AND seen_in_batch),"
            " count(*) FILTER (WHERE stream_matches_batch IS TRUE),"
            " count(*) FILTER (WHERE stream_matches_batch IS FALSE),"
            " count(*) FILTER (WHERE seen_in_stream AND NOT seen_in_batch)"
            " FROM transfers WHERE sim_day BETWEEN %s AND %s GROUP BY sim_day",
            (first, last_day),
        )
        unconfirmed = dict(await self.fetch(UNCONFIRMED_BY_DAY, (first, last_day)))
        by_day = {row[0]: row for row in rows}
        complete = [by_day.get(day, (day, 0, 0, 0, 0, 0, 0)) for day in range(first, last_day + 1)]
        days = reconcile(complete, unconfirmed, self.settings.start_date)
        return {
            "sim_day": last_day,
            "days": days,
            "days_with_mismatch": sum(1 for d in days if not d["ok"]),
            "mismatched_transfers": sum(d["mismatched"] + d["unconfirmed"] + d["stream_only"] for d in days),
        }

    async def charts(self) -> dict[str, Any]:
        last_day = await self.last_complete_day()
        if self.chart_days and max(self.chart_days) > last_day:
            self.chart_days.clear()  # another run in the same database: forget the old one
        first = max(1 if last_day >= 1 else 0, last_day - CHART_DAYS + 1)
        for day in [d for d in self.chart_days if d < first]:
            del self.chart_days[day]
        missing = [d for d in range(first, last_day + 1) if d not in self.chart_days]
        if missing:
            lo, hi = missing[0], missing[-1]
            census: dict[int, dict[int, int]] = {}
            for day, ward_id, occupied in await self.fetch(
                "SELECT sim_day, ward_id, occupied FROM ward_census WHERE sim_day BETWEEN %s AND %s", (lo, hi)
            ):
                census.setdefault(day, {})[ward_id] = occupied
            admissions = dict(
                await self.fetch(
                    # an admission cancelled in error (HL7 A11) never happened
                    "SELECT sim_day, count(*) FROM admissions"
                    " WHERE sim_day BETWEEN %s AND %s AND cancelled_at IS NULL GROUP BY 1",
                    (lo, hi),
                )
            )
            discharges = dict(
                await self.fetch(
                    # net of the discharges cancelled in error (HL7 A13, on the same day)
                    "SELECT sim_day, count(*) FILTER (WHERE event_type = 'discharge')"
                    " - count(*) FILTER (WHERE event_type = 'cancel_discharge') FROM transfers"
                    " WHERE sim_day BETWEEN %s AND %s AND event_type IN ('discharge', 'cancel_discharge')"
                    " GROUP BY 1",
                    (lo, hi),
                )
            )
            for day in missing:
                self.chart_days[day] = DayFigures(
                    census.get(day, {}), admissions.get(day, 0), discharges.get(day, 0)
                )
        days = list(range(first, last_day + 1)) if last_day >= 0 else []
        figures = [self.chart_days[d] for d in days]
        return {
            "sim_day": last_day,
            "days": days,
            "dates": [self.date_of(d).isoformat() for d in days],
            "wards": [
                {
                    "ward_id": ward.ward_id,
                    "code": ward.code,
                    "name": ward.name,
                    "beds": ward.beds,
                    "occupied": [f.census.get(ward.ward_id) for f in figures],
                }
                for ward in services.wards().values()
            ],
            "occupied": [sum(f.census.values()) for f in figures],
            "beds": sum(w.beds for w in services.wards().values()),
            "admissions": [f.admissions for f in figures],
            "discharges": [f.discharges for f in figures],
        }


class WorkerDashboard(Dashboard):
    """The worker's dashboard: Faust builds it when the app has started, not at import."""

    current: ClassVar[Dashboard | None] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        WorkerDashboard.current = self


app.service(WorkerDashboard)
