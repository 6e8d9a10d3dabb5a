"""What operators look at: ``GET /dashboard/``, the JSON behind its panels, and ``GET /metrics``.

- ``/dashboard/`` is a static page (``hospital_stream/web/static/``; every script and stylesheet
  is served from ``/dashboard/static/``, so it works offline) that polls the JSON every 2 s.
- ``/dashboard/api/{wards,staffing,schedule,pipeline,reconciliation,charts}``: one per panel.
- ``/metrics``: Prometheus text exposition of :mod:`hospital_stream.metrics`.

Live state comes from this worker's own tables, consumer and sink; history from PostgreSQL,
through the ``Dashboard`` service (:mod:`hospital_stream.web.dashboard`); what the panels compute
from both, from :mod:`hospital_stream.web.panels`. Every live answer carries the tables' state
(``unassigned``, ``recovering``, ``ready``): until they are ready, the boards show no numbers
from them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust import web
from faust.assignor import LeaderAssignor, PartitionAssignor
from faust.exceptions import ConsumerNotStarted
from faust.tables.manager import TableManager
from faust.types import TP

from hospital_stream import services, topics
from hospital_stream.app import app, settings
from hospital_stream.metrics import CONTENT_TYPE, METRICS
from hospital_stream.tables import assignment_by_staff, occupancy_by_ward
from hospital_stream.web.dashboard import Dashboard, DashboardUnavailable, WorkerDashboard
from hospital_stream.web.page import API_HEADERS, CONTENT_TYPES, PAGE_HEADERS, STATIC, STATIC_NAME
from hospital_stream.web.panels import (
    consumer_lag,
    generator_state,
    recovered_partitions,
    staff_board,
    tables_state,
    ward_board,
)

logger = logging.getLogger(__name__)


def _dashboard() -> Dashboard:
    if WorkerDashboard.current is None:
        raise DashboardUnavailable("the worker is still starting")
    return WorkerDashboard.current


# --- live state of this worker -----------------------------------------------------------------


def _assignment() -> set[TP]:
    """Every partition this worker's consumer holds now (none before it has joined its group)."""
    try:
        return set(app.consumer.assignment())
    except ConsumerNotStarted:
        return set()


def _tables(assignment: set[TP]) -> dict[str, Any]:
    """The tables' state, from the assignment, the table manager and its ``Recovery`` service:
    which changelog partitions this worker holds, and which of them recovery has read to their
    end (``active_highwaters`` against ``active_offsets``)."""
    changelogs = app.tables.changelog_topics
    actives = [tp for tp in app.assignor.assigned_actives() if tp.topic in changelogs]
    recovery = cast(TableManager, app.tables).recovery
    done = recovered_partitions(actives, recovery.active_highwaters, recovery.active_offsets)
    return tables_state(bool(assignment), app.tables.actives_ready, len(actives), done)


def _generator(assignment: set[TP]) -> dict[str, Any]:
    """Where the generator runs: the worker holding the leader partition in the group's last
    assignment (every member gets the whole group's assignment of the other topics from Faust's
    assignor, by worker URL)."""
    leader_tp = cast(LeaderAssignor, app._leader_assignor)._leader_tp
    group = cast(PartitionAssignor, app.assignor).external_topics_metadata()
    holders = [url for url, topics in group.items() if leader_tp.partition in topics.get(leader_tp.topic, ())]
    return generator_state(bool(assignment), leader_tp in assignment, holders, str(app.conf.canonical_url))


def _table_wards() -> dict[str, Any]:
    values = {int(k): v for k, v in occupancy_by_ward.items()}
    ready = _tables(_assignment())["state"] == "ready"
    return ward_board(values, services.wards().values(), None, tables_ready=ready)


_NOT_ASSIGNED = (ConsumerNotStarted, IllegalStateError)


async def _consumer_partitions() -> list[dict[str, Any]]:
    """Lag of this worker's own consumer, from what it knows locally (no broker round trip)."""
    consumer = app.consumer
    prefix = settings.topic_prefix + "."
    assigned = [tp for tp in _assignment() if tp.topic.startswith(prefix)]
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
    """Every ward's beds, occupancy, pressure and waiting arrivals (the table, once it is ready),
    with the bed requests of the last complete day by outcome (PostgreSQL)."""
    values = {int(k): v for k, v in occupancy_by_ward.items()}
    tables = _tables(_assignment())
    payload: dict[str, Any] = {
        "tables": tables,
        "requests_day": None,
        "requests_date": None,
        "database_error": None,
    }
    requests = None
    try:
        day = await _dashboard().last_complete_day()
        if day >= 0:
            requests = await _dashboard().bed_requests(day)
            payload.update(requests_day=day, requests_date=_dashboard().date_of(day).isoformat())
    except DashboardUnavailable as exc:
        payload["database_error"] = str(exc)
    payload.update(ward_board(values, services.wards().values(), requests, tables["state"] == "ready"))
    return _api(self, payload)


@app.page("/dashboard/api/staffing")
async def dashboard_staffing(self: web.View, request: web.Request) -> web.Response:
    """Assignments per ward, role and specialty (the table, once it is ready), wards below their
    minimum, and retirements coming and replacements made (PostgreSQL)."""
    tables = _tables(_assignment())
    payload: dict[str, Any] = staff_board(
        [m for _, m in assignment_by_staff.items()], services.wards().values(), tables["state"] == "ready"
    )
    payload.update(tables=tables, as_of_date=None, retirements=None, replacements=None, database_error=None)
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
    """The tables' state, where the generator runs, this worker's consumer lag, the sink's buffer
    and last flush, and the dead letters."""
    assignment = _assignment()
    partitions = await _consumer_partitions()
    payload: dict[str, Any] = {
        "tables": _tables(assignment),
        "generator": _generator(assignment),
        "consumer": {
            "partitions": partitions,
            # no partitions yet: no lag known, rather than none
            "lag": sum(p["lag"] or 0 for p in partitions) if partitions else None,
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
