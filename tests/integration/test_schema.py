"""The table registry (``hospital_stream.schema``) against the catalog the migrations build."""

from __future__ import annotations

import psycopg
import pytest

from hospital_stream import schema

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalog(reference_run: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every table of the reference run's migrated database: column name -> data type."""
    with psycopg.connect(reference_run["HOSPITAL_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, {})[column] = data_type
    return tables


def test_the_registry_names_every_table_the_migrations_create(catalog):
    assert set(catalog) == {*schema.DATA_TABLES, *schema.PIPELINE_TABLES, "schema_migrations"}


def test_every_batch_table_copies_into_columns_its_target_has(catalog):
    for spec in schema.TABLES.values():
        target = catalog[spec.target]
        missing = [column for column in spec.columns if column not in target]
        assert not missing, f"{spec.name}: {spec.target} has no {missing}"
        assert set(spec.key) <= set(spec.columns), spec.name


def test_insert_tables_cover_every_column_but_the_later_updates_and_flags(catalog):
    updated = {c for s in schema.TABLES.values() if s.mode == "update" for c in s.columns if c not in s.key}
    for spec in schema.TABLES.values():
        if spec.mode == "update":
            continue
        unset = set(catalog[spec.target]) - set(spec.columns) - updated
        # what the sink fills itself: transfers' stream flags and when a row was stored
        assert unset <= {"seen_in_stream", "seen_in_batch", "stream_matches_batch", "stored_at"}, (
            spec.name,
            unset,
        )


def test_time_columns_exist_with_a_time_type(catalog):
    for table in schema.STORED_TABLES.values():
        columns = catalog[table.name]
        assert ("sim_day" in columns) == table.has_sim_day, table.name
        if table.time_column is None:
            continue
        kind = columns[table.time_column]
        expected = {"sim_day": "integer"}.get(table.time_column) or (
            "date" if table.time_column.endswith("_on") else "timestamp with time zone"
        )
        assert kind == expected, (table.name, table.time_column, kind)
