"""``hospital-stream status|plan|validate|dlq|export``: what a run stored."""

from __future__ import annotations

import asyncio
import sys
import time

import click

from hospital_stream import db
from hospital_stream.cli.main import _database, _embedded_postgres, _plan, _settings, friendly_errors, main
from hospital_stream.errors import ConfigError
from hospital_stream.tools import dead_letters, kafka_admin


@main.command("status")
@friendly_errors
def status() -> None:
    """Simulated date, days stored, rows per table, stream/batch counts, lag, dead letters."""
    settings = _settings()
    with _database(settings) as conn:
        last_day = db.last_complete_day(conn)
        run = conn.execute("SELECT run_id, config FROM simulation").fetchone()
        date = conn.execute("SELECT sim_date FROM sim_days WHERE sim_day = %s", (last_day,)).fetchone()
        counts = db.table_row_counts(conn)
        stream = conn.execute(
            "SELECT count(*) FILTER (WHERE seen_in_stream), count(*) FILTER (WHERE seen_in_batch),"
            " count(*) FILTER (WHERE seen_in_stream AND seen_in_batch) FROM transfers"
        ).fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    if run is None:
        click.echo("no run yet: `hospital-stream run --days 30 --speed max` starts one")
    else:
        click.echo(f"run {run[0]} (seed {run[1]['seed']}, {run[1]['beds']} beds)")
    click.echo(f"simulated date   {date[0] if date else '-'} (day {last_day} of {settings.schedule_days})")
    click.echo(f"days stored      {last_day + 1}")
    if size:
        planned = _plan(settings, settings.schedule_days)["bytes"]
        click.echo(
            f"database size    {size[0] / 1e6:,.1f} MB of {planned / 1e6:,.0f} MB planned for "
            f"{settings.schedule_days} days ({100 * size[0] / planned:.0f}%)"
        )
    for table, count in counts.items():
        click.echo(f"  {table:18} {count:>12,}")
    assert stream is not None and dead is not None
    click.echo(f"transfers        streamed {stream[0]:,}, in batches {stream[1]:,}, both {stream[2]:,}")
    click.echo(f"dead letters     {dead[0]:,}")
    click.echo(f"consumer lag     {kafka_admin.consumer_lag(settings)}")


@main.command("plan")
@click.option("--days", type=click.IntRange(min=1), help="Simulated days (default: HOSPITAL_SCHEDULE_DAYS).")
@click.option("--beds", type=click.IntRange(min=1), help="Beds (default: HOSPITAL_BEDS).")
@click.option(
    "--population", type=click.IntRange(min=1), help="Catchment size (default: HOSPITAL_POPULATION)."
)
@click.option("--seed", type=click.IntRange(min=0), help="Simulation seed (default: HOSPITAL_SEED).")
@friendly_errors
def plan_command(days: int | None, beds: int | None, population: int | None, seed: int | None) -> None:
    """Predict rows and bytes per table of a run before it starts (needs no broker or database:
    the simulator runs a sample of days and the rest is extrapolated)."""
    settings = _settings(beds=beds, population=population, seed=seed)
    days = days or settings.schedule_days
    planned = _plan(settings, days)
    click.echo(f"{days} simulated days of {settings.beds:,} beds and {settings.population:,} people:")
    for table, figures in planned["tables"].items():
        click.echo(f"  {table:18} {figures['rows']:>14,} rows {figures['bytes'] / 1e6:>10,.1f} MB")
    click.echo(
        f"  {'total':18} {planned['rows']:>14,} rows {planned['bytes'] / 1e6:>10,.1f} MB "
        f"(database, catalog included; {planned['sampled_days']} days simulated, the rest extrapolated)"
    )


def _dead_letter_counts(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    """``KIND=N`` options as {kind: N}, each kind one of the dead_letters table's."""
    from hospital_stream.wire.dead_letters import DeadLetterKind

    kinds = [str(kind) for kind in DeadLetterKind]
    counts: dict[str, int] = {}
    for value in values:
        kind, equals, number = value.partition("=")
        if not equals or not number.isdigit():
            raise click.BadParameter(f"{value!r} is not KIND=N (N a count, e.g. bad_row=2)", ctx, param)
        if kind not in kinds:
            raise click.BadParameter(
                f"{kind!r} is no dead-letter kind: one of {', '.join(kinds)}", ctx, param
            )
        if kind in counts:
            raise click.BadParameter(f"{kind} is declared twice", ctx, param)
        counts[kind] = int(number)
    return counts


@main.command("validate")
@click.option(
    "--from", "first", type=click.IntRange(min=0), default=0, show_default=True, help="First day judged."
)
@click.option(
    "--to", "last", type=click.IntRange(min=0), help="Last day judged  [default: last complete day]"
)
@click.option(
    "--expect-dead-letters",
    "dead_letters",
    multiple=True,
    metavar="KIND=N",
    callback=_dead_letter_counts,
    help="The store holds exactly N dead letters (not replayed) of KIND; repeatable. Default: none.",
)
@click.option(
    "--skip-content",
    is_flag=True,
    help="Do not compare the stored rows with the simulator's (the slow check).",
)
@click.option("--digests", is_flag=True, help="Print the rows and md5 of every stored day and table.")
@friendly_errors
def validate(
    first: int, last: int | None, dead_letters: dict[str, int], skip_content: bool, digests: bool
) -> None:
    """Check the stored data's invariants; exit 1 with a report if any fails.

    The checks judge the days 30 simulated days at a time, each window's queries reading only
    its days; a line on stderr reports each window. "content equals simulator" runs the
    simulator again for the days judged and compares every stored row with its rows."""
    from hospital_stream.tools import content
    from hospital_stream.tools.validate import ALL_CHECKS, run_checks

    if last is not None and last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")

    def progress(lo: int, hi: int, seconds: float) -> None:
        click.echo(f"checked days {lo}..{hi} in {seconds:.2f} s", err=True)

    with _database(_settings()) as conn:
        day, outcomes = run_checks(
            conn, first, last, progress, check_content=not skip_content, dead_letters=dead_letters
        )
        stored = content.stored_digests(conn, first, day) if digests and day >= first else {}
    if day < 0:
        raise click.ClickException("no complete day stored yet: nothing to validate")
    if day < first:
        raise click.ClickException(f"day {first} is not completely stored yet (last complete day: {day})")
    for (sim_day, table), (rows, md5) in sorted(stored.items()):
        click.echo(f"digest day {sim_day} {table} {rows} rows md5 {md5}")
    click.echo(f"validating days {first}..{day}")
    for outcome in outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        click.echo(
            f"{mark} {outcome.check.name}: {outcome.check.description}"
            + ("" if outcome.ok else f" -- {outcome.violations:,} violations")
        )
        for row in outcome.sample:
            click.echo(f"       e.g. {_example(outcome.columns, row)}")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(outcomes)} checks failed", err=True)
        raise click.exceptions.Exit(1)
    skipped = len(ALL_CHECKS) - len(outcomes)
    click.echo(
        f"all {len(outcomes)} checks passed" + (f" ({skipped} skipped: --skip-content)" if skipped else "")
    )


def _example(columns: tuple[str, ...], row: tuple[object, ...]) -> str:
    """A violation's values, named by their columns when the check has them."""
    values = ["NULL" if value is None else str(value) for value in row]
    if not columns:
        return " | ".join(values)
    return ", ".join(f"{column}={value}" for column, value in zip(columns, values, strict=True))


@main.group("dlq")
def dlq_group() -> None:
    """The dead-letter store: messages and rows that could not be stored, with the reason."""


@dlq_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Include dead letters already replayed.")
@friendly_errors
def dlq_list(limit: int, show_all: bool) -> None:
    """List dead letters, newest first."""
    with _database(_settings()) as conn:
        rows = dead_letters.newest(conn, limit, show_all)
        total = dead_letters.count_not_replayed(conn)
    for row in rows:
        where = f"{row['topic']}[{row['partition']}]@{row['offset']}"
        where += f" row {row['row_number']}" if row["row_number"] else ""
        kind = row["kind"] + (f" day {row['sim_day']}" if row["sim_day"] is not None else "")
        replayed = row["replayed_at"]
        note = f" (replayed {replayed:%Y-%m-%d %H:%M})" if replayed else ""
        size = f"{row['payload_bytes']:>8} B"
        click.echo(f"{row['dead_letter_id']:>8}  {where:48} {size}  {kind:24} {row['reason'][:120]}{note}")
    click.echo(f"{total:,} not replayed")


@dlq_group.command("replay")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1))
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter not yet replayed.")
@friendly_errors
def dlq_replay(ids: tuple[int, ...], replay_all: bool) -> None:
    """Try dead letters again: whole messages go back to their topic; rows are written again.

    A replayed message that is still bad becomes a new dead letter; a row that is still bad
    stays as it is and its reason is shown.
    """
    if not ids and not replay_all:
        raise ConfigError("name dead-letter ids to replay, or --all")
    settings = _settings()
    with _embedded_postgres(settings):
        with _database(settings, write=True) as conn:
            letters = dead_letters.pending(conn, ids, replay_all)
        if not letters:
            click.echo("nothing to replay")
            return
        done = asyncio.run(dead_letters.replay(settings, letters))
        with _database(settings, write=True) as conn:
            dead_letters.mark_replayed(conn, done)
        click.echo(f"replayed {len(done)} of {len(letters)}")


@main.command("export")
@click.option(
    "--format",
    "fmt",
    default="csv",
    show_default=True,
    metavar="csv|parquet|fhir",
    help="CSV or Parquet files per table, or FHIR R4 bulk-data NDJSON per resource type.",
)
@click.option(
    "--out", "out_dir", required=True, metavar="DIR", help="Folder for the files (created if missing)."
)
@click.option(
    "--tables",
    multiple=True,
    metavar="T1,T2",
    help="Tables (csv, parquet) or resource types (fhir), comma-separated or repeated. Default: all.",
)
@click.option("--from", "date_from", metavar="YYYY-MM-DD", help="First day (SAST) of rows to export.")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", help="Last day (SAST, inclusive) of rows to export.")
@friendly_errors
def export(
    fmt: str, out_dir: str, tables: tuple[str, ...], date_from: str | None, date_to: str | None
) -> None:
    """Export tables as CSV or Parquet files, or as FHIR R4 NDJSON, streamed in bounded memory.

    --from/--to keep the rows whose time column (admitted_at, charted_at, ...) falls on those
    days; see docs/exports.md for what each table and resource type uses.
    """
    from hospital_stream.tools import export as exports

    plan = exports.plan(fmt, out_dir, tables, date_from, date_to)
    settings = _settings()
    started, rows, size = time.monotonic(), 0, 0
    with _database(settings) as conn:
        progress = exports.ConsoleProgress(tty=sys.stdout.isatty())
        for written in exports.run(conn, plan, progress, settings.start_date):
            click.echo(written.summary())
            rows, size = rows + written.rows, size + written.size_bytes
    names, items = ("resource types", "resources") if plan.fmt == "fhir" else ("tables", "rows")
    click.echo(
        f"exported {len(plan.names)} {names} to {plan.out_dir}: {rows:,} {items},"
        f" {size / 1e6:,.1f} MB in {time.monotonic() - started:.1f} s"
    )
