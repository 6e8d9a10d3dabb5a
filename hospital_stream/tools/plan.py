"""What a run will store, before it starts: rows and bytes per table.

The simulator runs for a sample of days (day 0, the catchment and reference data, then up to
``SAMPLE_DAYS`` hospital days) without a broker or a database; each table's daily rows are
extrapolated over the schedule and turned into bytes with the bytes a row takes in PostgreSQL
15 (heap, indexes and the dead tuples updates leave), measured as ``pg_total_relation_size`` /
rows after a 40-day run with default settings. A bed-capped hospital's daily volume is steady,
so the sample's average holds for the schedule within the seasonal swing (the issue asks for
15%; ``tests/integration`` compare a plan with what a run stored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from hospital_stream import sim
from hospital_stream.schema import LEDGER_BYTES_PER_ROW, STORED_TABLES, TABLES

SAMPLE_DAYS = 14
#: bytes a stored row takes on disk, per table (the registry's figures) and the chunk ledger's
BYTES_PER_ROW = {name: table.bytes_per_row for name, table in STORED_TABLES.items()} | {
    "ingested_chunks": LEDGER_BYTES_PER_ROW
}
#: a table's first pages and index roots, whatever its rows
TABLE_OVERHEAD_BYTES = 32_768
#: a fresh database's catalog
CATALOG_BYTES = 8_500_000
#: a sim_days row beyond its checkpoint (manifest, dates, tuple and index)
DAY_ROW_BYTES = 1_000


@dataclasses.dataclass(frozen=True)
class TablePlan:
    table: str
    rows: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class Plan:
    days: int
    sampled_days: int
    seconds: float
    tables: tuple[TablePlan, ...]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def bytes(self) -> int:
        return CATALOG_BYTES + sum(t.bytes for t in self.tables)

    def to_json(self) -> dict[str, object]:
        return {
            "days": self.days,
            "sampled_days": self.sampled_days,
            "rows": self.rows,
            "bytes": self.bytes,
            "tables": {t.table: {"rows": t.rows, "bytes": t.bytes} for t in self.tables},
        }


def estimate(config: sim.HospitalConfig, days: int, sample_days: int = SAMPLE_DAYS) -> Plan:
    """Rows and bytes per table after ``days`` simulated days of ``config``."""
    if days < 1:
        raise ValueError("a plan needs at least one day")
    started = time.monotonic()
    sampled = min(sample_days, days - 1)
    first: dict[str, int] = {}
    later: dict[str, int] = {}
    chunks_first, chunks_later, checkpoint_bytes = 0, 0, 0
    for records in sim.iter_days(config, sampled + 1):
        counts = _stored_rows(records.row_counts())
        chunks = sum(-(-n // sim.CHUNK_ROWS) for n in records.row_counts().values() if n) + 1
        checkpoint_bytes += len(sim.encode_checkpoint(records.state))
        if records.day == 0:
            first, chunks_first = counts, chunks
        else:
            chunks_later += chunks
            for table, n in counts.items():
                later[table] = later.get(table, 0) + n
    per_day = {table: n / sampled for table, n in later.items()} if sampled else {}
    rows = {table: round(first.get(table, 0) + per_day.get(table, 0) * (days - 1)) for table in BYTES_PER_ROW}
    rows["ward_census"] = len(config.wards) * days
    rows["ingested_chunks"] = round(chunks_first + (chunks_later / sampled if sampled else 0) * (days - 1))
    tables = [
        TablePlan(table, n, round(n * BYTES_PER_ROW[table]) + TABLE_OVERHEAD_BYTES)
        for table, n in rows.items()
    ]
    tables.append(
        TablePlan("sim_days", days, round(checkpoint_bytes / (sampled + 1) * days) + DAY_ROW_BYTES * days)
    )
    return Plan(days, sampled, time.monotonic() - started, tuple(tables))


def _stored_rows(row_counts: dict[str, int]) -> dict[str, int]:
    """A day's batch rows as rows of the tables they land in (updates add no rows)."""
    stored: dict[str, int] = {}
    for name, n in row_counts.items():
        spec = TABLES[name]
        if spec.mode != "update":
            stored[spec.target] = stored.get(spec.target, 0) + n
    return stored


def cached_estimate(config: sim.HospitalConfig, days: int, cache_dir: Path) -> dict[str, object]:
    """:func:`estimate` as JSON, kept in ``cache_dir`` per configuration (a plan of the default
    hospital takes seconds: its catchment is built first). An unwritable folder only costs the
    cache."""
    key = hashlib.blake2b(
        json.dumps([config.to_json(), days, SAMPLE_DAYS, BYTES_PER_ROW], sort_keys=True).encode(),
        digest_size=8,
    ).hexdigest()
    path = cache_dir / f"plan-{key}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    planned = estimate(config, days).to_json()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(planned))
    except OSError:
        pass
    return planned
