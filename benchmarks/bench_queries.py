"""Do validate's and the dashboard's queries stay fast on a big database?

``python -m benchmarks.bench_queries [--from F] [--to T] [--repeat N] [--json PATH]``

Reads the database of ``HOSPITAL_DATABASE_URL`` (for instance the one ``python -m
benchmarks.bench_sim --days 863 --keep`` leaves: the full default schedule) and prints:

1. its size, and the rows of its largest tables;
2. every ``validate`` check over days F..T (default: every complete day), run as ``validate``
   runs it, a window of ``validate.WINDOW_DAYS`` days per query: the seconds of all its windows,
   and of the slowest one (the figure that must stay well under a second);
3. every PostgreSQL read of the dashboard's panels, through the dashboard's own methods (the
   charts with an empty cache, so all 120 days are read): the best of N runs, and the first.

Nothing is written to the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hospital_stream import db
from hospital_stream.settings import Settings
from hospital_stream.tools import validate

LARGEST = 8


def database_figures(conn: Any) -> tuple[int, list[tuple[str, int]]]:
    """The database's bytes, and its largest tables' (estimated) rows, largest first."""
    size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    rows = conn.execute(
        "SELECT c.relname, c.reltuples::bigint FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
        " WHERE c.relkind IN ('r', 'p') ORDER BY pg_total_relation_size(c.oid) DESC LIMIT %s",
        (LARGEST,),
    ).fetchall()
    return size, [(name, int(count)) for name, count in rows]


def time_validate(conn: Any, first: int, last: int | None) -> dict[str, Any]:
    """Every check's seconds over the days, its slowest window's, and the whole run's."""
    windows = 0

    def progress(lo: int, hi: int, seconds: float) -> None:
        nonlocal windows
        windows += 1
        print(f"validate: days {lo}..{hi} in {seconds:.2f} s", file=sys.stderr, flush=True)

    started = time.perf_counter()
    day, outcomes = validate.run_checks(conn, first, last, progress, check_content=False)
    return {
        "days": [first, day],
        "windows": windows,
        "window_days": validate.WINDOW_DAYS,
        "seconds": time.perf_counter() - started,
        "checks": {
            o.check.name: {"seconds": o.seconds, "slowest_window_seconds": o.slowest_seconds, "ok": o.ok}
            for o in outcomes
        },
    }


async def time_dashboard(settings: Settings, repeat: int) -> dict[str, dict[str, float]]:
    """Each panel's PostgreSQL reads: the first run's seconds and the best of ``repeat``."""
    from hospital_stream.web.dashboard import Dashboard  # imports the Faust app: only when needed

    dashboard = Dashboard(settings)
    try:
        day = await dashboard.last_complete_day()
        today = dashboard.date_of(day)

        async def charts_uncached() -> Any:
            dashboard.chart_days.clear()
            return await dashboard.charts()

        async def ward_requests() -> Any:
            return await dashboard.bed_requests(await dashboard.last_complete_day())

        panels: dict[str, Callable[[], Awaitable[Any]]] = {
            "last complete day (every panel)": dashboard.last_complete_day,
            "wards: bed requests of the day": ward_requests,
            "staffing: retirements coming": lambda: dashboard.retirements(today),
            "staffing: replacements made": lambda: dashboard.replacements(today),
            "schedule: size, rows, progress": dashboard.schedule,
            "pipeline: dead letters": dashboard.dead_letters,
            "reconciliation: last 14 days": dashboard.reconciliation,
            "charts: last 120 days, no cache": charts_uncached,
        }
        out = {}
        for name, read in panels.items():
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await read()
                times.append(time.perf_counter() - t0)
            out[name] = {"first_seconds": times[0], "best_seconds": min(times)}
        return out
    finally:
        if dashboard.pool is not None:
            await dashboard.pool.close()


def format_report(size: int, largest: list[tuple[str, int]], checks: dict[str, Any], panels: dict) -> str:
    lines = [
        f"database: {size / 1e9:.2f} GB; largest tables (rows): "
        + ", ".join(f"{name} {rows:,}" for name, rows in largest),
        "",
        f"validate, days {checks['days'][0]}..{checks['days'][1]} in {checks['windows']} windows of "
        f"{checks['window_days']} days: {checks['seconds']:.1f} s",
        f"{'check':<34}{'all windows s':>14}{'slowest window s':>18}  result",
    ]
    for name, c in checks["checks"].items():
        result = "ok" if c["ok"] else "FAIL"
        lines.append(f"{name:<34}{c['seconds']:>14.2f}{c['slowest_window_seconds']:>18.3f}  {result}")
    lines += ["", "dashboard panels' PostgreSQL reads", f"{'panel':<34}{'first s':>10}{'best s':>10}"]
    for name, p in panels.items():
        lines.append(f"{name:<34}{p['first_seconds']:>10.3f}{p['best_seconds']:>10.3f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_queries",
        description="Time every validate check and every dashboard read on the database of "
        "HOSPITAL_DATABASE_URL (read only).",
    )
    parser.add_argument("--from", dest="first", type=int, default=0, help="first day validated (default 0)")
    parser.add_argument("--to", dest="last", type=int, help="last day validated (default: last complete)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each dashboard read (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.first < 0 or args.repeat < 1 or (args.last is not None and args.last < args.first):
        parser.error("need 0 <= --from <= --to and --repeat >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    with db.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        size, largest = database_figures(conn)
        checks = time_validate(conn, args.first, args.last)
    panels = asyncio.run(time_dashboard(settings, args.repeat))
    print(format_report(size, largest, checks, panels), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"database_bytes": size, "largest": largest, "validate": checks, "dashboard": panels}, out
            )
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
