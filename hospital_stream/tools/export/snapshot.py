"""Running an export: one read-only REPEATABLE READ snapshot, each file written by its format's
exporter."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from hospital_stream import db
from hospital_stream.errors import DatabaseError
from hospital_stream.model import calendar
from hospital_stream.tools.export.context import _Context
from hospital_stream.tools.export.fhir import _export_fhir
from hospital_stream.tools.export.options import ExportPlan
from hospital_stream.tools.export.progress import Progress, Written
from hospital_stream.tools.export.tabular import _export_csv, _export_parquet

logger = logging.getLogger(__name__)


def run(
    conn: psycopg.Connection[Any], plan: ExportPlan, progress: Progress, fallback_start: dt.date
) -> Iterator[Written]:
    """Export ``plan`` from ``conn`` in one read-only snapshot, yielding each file written.

    The connection is left read-only and REPEATABLE READ. ``fallback_start`` is the first
    simulated day when the database holds no run yet.
    """
    conn.rollback()  # the snapshot's settings apply from the next transaction on
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(calendar.TIME_ZONE_NAME)))
    conn.execute("SET DateStyle = 'ISO, YMD'")
    run_row = conn.execute("SELECT (config->>'start_date')::date FROM simulation").fetchone()
    context = _Context(conn, plan.dates, run_row[0] if run_row and run_row[0] else fallback_start)
    export_one = {"csv": _export_csv, "parquet": _export_parquet, "fhir": _export_fhir}[plan.fmt]
    try:
        for name in plan.names:
            logger.info("exporting %s as %s to %s", name, plan.fmt, plan.out_dir)
            yield export_one(context, name, plan.out_dir, progress)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(f"the export's role may not read everything: {db.first_line(exc)}") from exc
    finally:
        conn.rollback()
