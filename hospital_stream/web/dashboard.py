"""What operators look at: ``GET /dashboard/``, the JSON behind its panels, and ``GET /metrics``.

- ``/dashboard/`` is a static page (``hospital_stream/static/``; every script and stylesheet is
  served from ``/dashboard/static/``, so it works offline) that polls the JSON every 2 s.
- ``/dashboard/api/{wards,staffing,schedule,pipeline,reconciliation,charts}``: one per panel.
- ``/metrics``: Prometheus text exposition of :mod:`hospital_stream.metrics`.

Live state comes from this worker's own tables, consumer and sink; history from PostgreSQL,
through a small pool of the dashboard's own that connects as the read-only login (not the sink's
pool: a page left open must never make a store wait for a connection). Queries stay
cheap on a big database: index ranges on ``sim_day`` and primary keys, LIMITs, and the
planner's row estimates instead of counting the big tables. Complete days never change, so the
charts keep what they read of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib.resources
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from aiokafka.errors import IllegalStateError
from faust import web
from faust.exceptions import ConsumerNotStarted
from mode import Service
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from hospital_stream import db, schema, services, topics
from hospital_stream.app import app, settings
from hospital_stream.errors import DatabaseError
from hospital_stream.metrics import CONTENT_TYPE, METRICS
from hospital_stream.model import RETIREMENT_AGE, STAFF_PER_BED, Ward
from hospital_stream.stream import rules
from hospital_stream.tables import assignment_by_staff, occupancy_by_ward

logger = logging.getLogger(__name__)

# --- pure helpers ------------------------------------------------------------------------------

#: occupancy (percent of staffed beds) from which a ward is amber, and above which it is red
AMBER_FROM_PCT = 85.0
RED_ABOVE_PCT = 95.0
#: roles with a minimum per ward; the minimum is the simulator's ratio rounded down, at least 1
MINIMUM_STAFFED_ROLES = ("doctor", "nurse")
RETIREMENT_WINDOW_DAYS = 90
REPLACEMENT_WINDOW_DAYS = 30
RECONCILIATION_DAYS = 14
CHART_DAYS = 120
#: samples older than these are dropped from the rates
ROWS_RATE_WINDOW_SECONDS = 30.0
DAYS_RATE_WINDOW_SECONDS = 300.0
#: seconds a simulated day takes at speed 1 (a batch every 15 minutes)
SECONDS_PER_DAY_AT_SPEED_1 = 900.0


def occupancy_pct(occupied: int, beds: int) -> float:
    return round(100.0 * occupied / beds, 1) if beds > 0 else 0.0


def pressure(occupied: int, beds: int) -> str:
    """``green`` below 85 % of beds occupied, ``amber`` from 85 % to 95 %, ``red`` above 95 %."""
    pct = 100.0 * occupied / beds if beds > 0 else 100.0
    if pct > RED_ABOVE_PCT:
        return "red"
    if pct >= AMBER_FROM_PCT:
        return "amber"
    return "green"


def minimum_staffing(beds: int) -> dict[str, int]:
    """The fewest doctors and nurses a ward of ``beds`` may have: the simulator's staff per bed
    (``sim.STAFF_PER_BED``) rounded down, and at least one of each."""
    return {role: max(1, math.floor(beds * STAFF_PER_BED[role])) for role in MINIMUM_STAFFED_ROLES}


def staffing_gaps(beds: int, assigned: Mapping[str, int]) -> dict[str, int]:
    """How many people of each role a ward is short of its minimum (only roles that are short)."""
    return {
        role: minimum - assigned.get(role, 0)
        for role, minimum in minimum_staffing(beds).items()
        if assigned.get(role, 0) < minimum
    }


def turns_65_on(birth: dt.date) -> dt.date:
    """The retirement day, as the simulator has it (29 February birthdays: 1 March)."""
    try:
        return birth.replace(year=birth.year + RETIREMENT_AGE)
    except ValueError:
        return dt.date(birth.year + RETIREMENT_AGE, 3, 1)


def retires_within(birth: dt.date, today: dt.date, days: int) -> bool:
    """Whether someone born on ``birth`` turns 65 after ``today`` and at most ``days`` later."""
    return today < turns_65_on(birth) <= today + dt.timedelta(days=days)


def retirement_birth_range(today: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """Birth dates that may retire within ``days`` after ``today`` (a day wider on both sides,
    for 29 February; :func:`retires_within` decides exactly)."""

    def years_before(day: dt.date) -> dt.date:
        try:
            return day.replace(year=day.year - RETIREMENT_AGE)
        except ValueError:
            return dt.date(day.year - RETIREMENT_AGE, 2, 28)

    one = dt.timedelta(days=1)
    return years_before(today + one) - one, years_before(today + dt.timedelta(days=days)) + one


def pair_replacements(
    retirements: Sequence[Mapping[str, Any]], hires: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each retirement with the hire that replaced it: same day, role, specialty and ward.

    Both are dicts with ``staff_id``, ``role``, ``specialty``, ``ward_id`` and ``on`` (the
    retirement or hiring day); a hire replaces at most one retirement. Newest first.
    """
    waiting: dict[tuple[Any, ...], list[int]] = {}
    for hire in sorted(hires, key=lambda h: h["staff_id"]):
        key = (hire["on"], hire["role"], hire["specialty"], hire["ward_id"])
        waiting.setdefault(key, []).append(hire["staff_id"])
    paired = []
    for retired in sorted(retirements, key=lambda r: (r["on"], r["staff_id"])):
        candidates = waiting.get((retired["on"], retired["role"], retired["specialty"], retired["ward_id"]))
        paired.append(
            {
                "retired_on": retired["on"],
                "staff_id": retired["staff_id"],
                "role": retired["role"],
                "specialty": retired["specialty"],
                "ward_id": retired["ward_id"],
                "replacement_staff_id": candidates.pop(0) if candidates else None,
            }
        )
    return sorted(paired, key=lambda p: (p["retired_on"], p["staff_id"]), reverse=True)


def rate_per_second(samples: Sequence[tuple[float, float]]) -> float | None:
    """The rate between the first and the last ``(seconds, value)`` sample; None if they are
    less than a second apart."""
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < 1.0:
        return None
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    return max(0.0, (v1 - v0) / (t1 - t0))


def eta_seconds(last_day: int, end_day: int, days_per_second: float | None) -> float | None:
    """Seconds until day ``end_day - 1`` is stored, when ``last_day`` is and days come at the
    given rate; 0 when done, None when the rate is unknown or zero."""
    remaining = end_day - 1 - last_day
    if remaining <= 0:
        return 0.0
    if not days_per_second:
        return None
    return remaining / days_per_second


def ward_board(
    values: Mapping[int, Mapping[str, Any]],
    wards: Iterable[Ward],
    requests: Mapping[int, Mapping[str, int]] | None,
) -> dict[str, Any]:
    """The ward board from the table's values (ward id -> value), with each ward's bed requests
    of the day by outcome (None: unknown)."""
    rows = []
    for ward in wards:
        value = values.get(ward.ward_id) or rules.new_ward(ward.ward_id, ward.beds)
        view = rules.ward_view(dict(value), ward.name, ward.specialty)
        del view["patients"]
        outcomes = None if requests is None else dict(requests.get(ward.ward_id, {}))
        rows.append(
            {
                **view,
                "code": ward.code,
                "occupancy_pct": occupancy_pct(view["occupied"], view["beds"]),
                "pressure": pressure(view["occupied"], view["beds"]),
                "requests": None
                if outcomes is None
                else {k: outcomes.get(k, 0) for k in ("admitted", "diverted", "postponed")},
            }
        )
    beds = sum(w["beds"] for w in rows)
    occupied = sum(w["occupied"] for w in rows)
    totals: dict[str, Any] = {
        "wards": len(rows),
        "beds": beds,
        "occupied": occupied,
        "occupancy_pct": occupancy_pct(occupied, beds),
        "pressure": pressure(occupied, beds),
        "waiting_for_bed": sum(w["waiting_for_bed"] for w in rows),
        "by_pressure": {p: sum(1 for w in rows if w["pressure"] == p) for p in ("green", "amber", "red")},
    }
    for outcome in ("admitted", "diverted", "postponed"):
        totals[outcome] = None if requests is None else sum(w["requests"][outcome] for w in rows)
    return {"wards": rows, "totals": totals}


def staff_board(members: Iterable[Mapping[str, Any]], wards: Iterable[Ward]) -> dict[str, Any]:
    """Assignments per ward, role and specialty from ``assignment_by_staff`` values, with each
    ward's minimum and the wards below it."""
    roles: dict[int, Counter[str]] = {}
    specialties: dict[int, Counter[str]] = {}
    for member in members:
        if rules.is_assigned(member):
            roles.setdefault(member["ward_id"], Counter())[member["role"]] += 1
            specialties.setdefault(member["ward_id"], Counter())[member["specialty"]] += 1
    rows, gaps = [], []
    for ward in wards:
        by_role = roles.get(ward.ward_id, Counter())
        short = staffing_gaps(ward.beds, by_role)
        minimum = minimum_staffing(ward.beds)
        rows.append(
            {
                "ward_id": ward.ward_id,
                "code": ward.code,
                "name": ward.name,
                "specialty": ward.specialty,
                "beds": ward.beds,
                "staff_count": sum(by_role.values()),
                "roles": {role: by_role.get(role, 0) for role in STAFF_PER_BED},
                "specialties": dict(sorted(specialties.get(ward.ward_id, Counter()).items())),
                "minimum": minimum,
                "short": short,
            }
        )
        for role, missing in short.items():
            gaps.append(
                {
                    "ward_id": ward.ward_id,
                    "code": ward.code,
                    "name": ward.name,
                    "role": role,
                    "assigned": by_role.get(role, 0),
                    "minimum": minimum[role],
                    "short": missing,
                }
            )
    return {"wards": rows, "staff_count": sum(r["staff_count"] for r in rows), "gaps": gaps}


def reconcile(
    rows: Iterable[Sequence[Any]], unconfirmed: Mapping[int, int], start: dt.date
) -> list[dict[str, Any]]:
    """Per day, newest first: transfers streamed, in the batch, in both, matching or not, and
    streamed transfers the batch did not hold (dead letters). ``rows`` are (sim_day, streamed,
    in_batch, both, matching, mismatched, stream_only)."""
    days = []
    for day, streamed, in_batch, both, matching, mismatched, stream_only in rows:
        missing = unconfirmed.get(day, 0)
        days.append(
            {
                "sim_day": day,
                "sim_date": (start + dt.timedelta(days=day)).isoformat(),
                "streamed": streamed + missing,
                "in_batch": in_batch,
                "both": both,
                "matching": matching,
                "mismatched": mismatched,
                "stream_only": stream_only,
                "unconfirmed": missing,
                "ok": mismatched == 0 and stream_only == 0 and missing == 0 and matching == both,
            }
        )
    return sorted(days, key=lambda d: d["sim_day"], reverse=True)


def consumer_lag(
    partitions: Iterable[tuple[str, int]],
    highwater: Mapping[tuple[str, int], int | None],
    committed: Mapping[tuple[str, int], int | None],
    position: Mapping[tuple[str, int], int | None],
) -> list[dict[str, Any]]:
    """Per partition: its end (highwater), the next offset to commit, and the lag between them.

    Offsets follow Kafka: the highwater is the offset the next message will get, and a committed
    offset is the next one to read. A partition with nothing committed by this worker yet counts
    from its read position; one whose end is not known yet (no fetch answered) has lag None.
    """
    out = []
    for tp in sorted(partitions):
        end, done, read = highwater.get(tp), committed.get(tp), position.get(tp)
        base = done if done is not None else read
        lag = None if end is None else max(0, end - (base or 0))
        out.append(
            {
                "topic": tp[0],
                "partition": tp[1],
                "highwater": end,
                "committed": done,
                "position": read,
                "lag": lag,
            }
        )
    return out


# --- PostgreSQL --------------------------------------------------------------------------------


class DashboardUnavailable(DatabaseError):
    """The dashboard cannot read PostgreSQL right now (its panels show the reason)."""


@dataclasses.dataclass(frozen=True)
class DayFigures:
    """What the charts show of one complete day (complete days never change)."""

    census: dict[int, int]
    admissions: int
    discharges: int


TABLE_ROWS = """
    SELECT c.relname, greatest(coalesce(s.n_live_tup, 0), c.reltuples, 0)::bigint
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.relkind = 'r' AND c.relname = ANY(%s)
"""

#: streamed transfers that their day's batch did not hold (moved to the dead letters), per day
UNCONFIRMED_BY_DAY = """
    SELECT day::int, count(*) FROM (
        SELECT substring(reason from 'not in the batch of day ([0-9]+)') AS day
        FROM dead_letters WHERE partition = -1
    ) unconfirmed
    WHERE day IS NOT NULL GROUP BY day
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
                    reasons.append(f"{user}: {_first_line(exc)}")
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
            raise DashboardUnavailable(_first_line(exc)) from exc

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
            'SELECT dead_letter_id, topic, partition, "offset", row_number, table_name, left(reason, 300),'
            " payload_bytes, received_at FROM dead_letters ORDER BY dead_letter_id DESC LIMIT 5"
        )
        fields = (
            "id",
            "topic",
            "partition",
            "offset",
            "row_number",
            "table",
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
        unconfirmed = dict(await self.fetch(UNCONFIRMED_BY_DAY))
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


def _dashboard() -> Dashboard:
    if WorkerDashboard.current is None:
        raise DashboardUnavailable("the worker is still starting")
    return WorkerDashboard.current


# --- live state of this worker -----------------------------------------------------------------


def _table_wards() -> dict[str, Any]:
    values = {int(k): v for k, v in occupancy_by_ward.items()}
    return ward_board(values, services.wards().values(), None)


_NOT_ASSIGNED = (ConsumerNotStarted, IllegalStateError)


async def _consumer_partitions() -> list[dict[str, Any]]:
    """Lag of this worker's own consumer, from what it knows locally (no broker round trip)."""
    consumer = app.consumer
    prefix = settings.topic_prefix + "."
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic.startswith(prefix)]
    except ConsumerNotStarted:
        return []
    highwater: dict[tuple[str, int], int | None] = {}
    committed: dict[tuple[str, int], int | None] = {}
    position: dict[tuple[str, int], int | None] = {}
    for tp in assigned:
        key = (tp.topic, tp.partition)
        try:
            highwater[key] = consumer.highwater(tp)
        except (*_NOT_ASSIGNED, AssertionError):  # revoked meanwhile: aiokafka asserts
            highwater[key] = None
        if highwater[key] is None:  # not fetched yet
            highwater[key] = app.monitor.tp_end_offsets.get(tp)
        committed[key] = app.monitor.tp_committed_offsets.get(tp)
        if committed[key] is None:
            try:
                position[key] = await asyncio.wait_for(consumer.position(tp), 1.0)
            except (*_NOT_ASSIGNED, TimeoutError):
                position[key] = None
    return consumer_lag(list(highwater), highwater, committed, position)


def _buffered_messages() -> int:
    """Messages the sink consumed and has not acknowledged yet: its buffer and the one storing."""
    unacked = list(app.consumer.unacked)
    return sum(1 for message in unacked if message.topic in topics.SINK_TOPICS)


def _flush() -> dict[str, Any] | None:
    flush = METRICS.last_flush
    if flush is None:
        return None
    return {
        "at": dt.datetime.fromtimestamp(flush.at, dt.UTC).isoformat(),
        "age_seconds": round(max(0.0, time.time() - flush.at), 1),
        "seconds": round(flush.seconds, 4),
        "messages": flush.messages,
        "rows": flush.rows,
        "dead_letters": flush.dead_letters,
    }


# --- pages -------------------------------------------------------------------------------------

STATIC = importlib.resources.files("hospital_stream.web") / "static"
STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css)$")
CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
#: everything from this origin only: no inline script, no CDN, no plug-ins, no framing
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _api(view: web.View, payload: dict[str, Any], status: int = 200) -> web.Response:
    return view.json(payload, status=status, headers=dict(API_HEADERS))


def _unavailable(view: web.View, exc: DashboardUnavailable) -> web.Response:
    return _api(view, {"error": f"PostgreSQL unavailable: {exc}"}, status=503)


@app.page("/dashboard/")
async def dashboard_page(self: web.View, request: web.Request) -> web.Response:
    """The dashboard page (static HTML; its script polls the JSON endpoints)."""
    html = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    return self.html(html, headers=dict(PAGE_HEADERS))


@app.page("/dashboard/static/{name}")
async def dashboard_static(self: web.View, request: web.Request, name: str) -> web.Response:
    """The page's script and stylesheet, from the package (no CDN)."""
    match = STATIC_NAME.match(name)
    if match is None or not (STATIC / name).is_file():
        raise self.NotFound(f"no such file: {name}")
    # the type goes in as a header: aiohttp refuses a charset in content_type with a bytes body
    headers = {**PAGE_HEADERS, "Content-Type": CONTENT_TYPES[match.group(1)]}
    return self.bytes((STATIC / name).read_bytes(), headers=headers)


@app.page("/dashboard/api/wards")
async def dashboard_wards(self: web.View, request: web.Request) -> web.Response:
    """Every ward's beds, occupancy, pressure and waiting arrivals (the table), with the bed
    requests of the last complete day by outcome (PostgreSQL)."""
    values = {int(k): v for k, v in occupancy_by_ward.items()}
    payload: dict[str, Any] = {"requests_day": None, "requests_date": None, "database_error": None}
    requests = None
    try:
        day = await _dashboard().last_complete_day()
        if day >= 0:
            requests = await _dashboard().bed_requests(day)
            payload.update(requests_day=day, requests_date=_dashboard().date_of(day).isoformat())
    except DashboardUnavailable as exc:
        payload["database_error"] = str(exc)
    payload.update(ward_board(values, services.wards().values(), requests))
    return _api(self, payload)


@app.page("/dashboard/api/staffing")
async def dashboard_staffing(self: web.View, request: web.Request) -> web.Response:
    """Assignments per ward, role and specialty (the table), wards below their minimum, and
    retirements coming and replacements made (PostgreSQL)."""
    payload: dict[str, Any] = staff_board(
        [m for _, m in assignment_by_staff.items()], services.wards().values()
    )
    payload.update(as_of_date=None, retirements=None, replacements=None, database_error=None)
    try:
        day = await _dashboard().last_complete_day()
        if day >= 0:
            today = _dashboard().date_of(day)
            payload["as_of_date"] = today.isoformat()
            payload["retirements"] = await _dashboard().retirements(today)
            payload["replacements"] = await _dashboard().replacements(today)
    except DashboardUnavailable as exc:
        payload["database_error"] = str(exc)
    return _api(self, payload)


@app.page("/dashboard/api/schedule")
async def dashboard_schedule(self: web.View, request: web.Request) -> web.Response:
    """Simulated date, day N of the schedule, data stored, rows per second and the ETA."""
    try:
        return _api(self, await _dashboard().schedule())
    except DashboardUnavailable as exc:
        return _unavailable(self, exc)


@app.page("/dashboard/api/pipeline")
async def dashboard_pipeline(self: web.View, request: web.Request) -> web.Response:
    """This worker's consumer lag, the sink's buffer and last flush, and the dead letters."""
    partitions = await _consumer_partitions()
    payload: dict[str, Any] = {
        "consumer": {
            # the one worker that generates (no partitions: the consumer may not have started)
            "leader": bool(partitions) and app.is_leader(),
            "partitions": partitions,
            "lag": sum(p["lag"] or 0 for p in partitions),
        },
        "sink": {
            "buffered_messages": _buffered_messages(),
            "last_flush": _flush(),
            "flushes": METRICS.flushes,
        },
        "database_login": WorkerDashboard.current and WorkerDashboard.current.login,
        "dead_letters": None,
        "database_error": None,
    }
    try:
        payload["dead_letters"] = await _dashboard().dead_letters()
    except DashboardUnavailable as exc:
        payload["database_error"] = str(exc)
    return _api(self, payload)


@app.page("/dashboard/api/reconciliation")
async def dashboard_reconciliation(self: web.View, request: web.Request) -> web.Response:
    """Streamed against batch transfers per simulated day, over the last complete days."""
    try:
        return _api(self, await _dashboard().reconciliation())
    except DashboardUnavailable as exc:
        return _unavailable(self, exc)


@app.page("/dashboard/api/charts")
async def dashboard_charts(self: web.View, request: web.Request) -> web.Response:
    """Occupancy per ward, admissions and discharges per complete day (ward_census, indexes)."""
    try:
        return _api(self, await _dashboard().charts())
    except DashboardUnavailable as exc:
        return _unavailable(self, exc)


@app.page("/metrics")
async def prometheus_metrics(self: web.View, request: web.Request) -> web.Response:
    """Prometheus metrics: the sink's counters, and gauges read now from the tables, the
    consumer and PostgreSQL (those keep their last values while PostgreSQL is unreachable)."""
    METRICS.set_wards(_table_wards()["wards"])
    METRICS.set_consumer_lag([p for p in await _consumer_partitions() if p["lag"] is not None])
    METRICS.buffered_messages.set(_buffered_messages())
    METRICS.schedule_days.set(settings.schedule_days)
    try:
        METRICS.simulated_day.set(await _dashboard().last_complete_day())
        METRICS.set_table_rows(await _dashboard().table_rows())
        total, open_ = (
            await _dashboard().fetch(
                "SELECT count(*), count(*) FILTER (WHERE replayed_at IS NULL) FROM dead_letters"
            )
        )[0]
        METRICS.dead_letters.set(total)
        METRICS.dead_letters_open.set(open_)
        METRICS.database_size.set(
            (await _dashboard().fetch("SELECT pg_database_size(current_database())"))[0][0]
        )
        METRICS.database_up.set(1)
    except DashboardUnavailable as exc:
        logger.debug("metrics without PostgreSQL: %s", exc)
        METRICS.database_up.set(0)
    return self.bytes(METRICS.render(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
