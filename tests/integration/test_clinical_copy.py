"""The clinical tables on a real PostgreSQL: the reference rows and generated days COPY in as
the sink will send them (5,000-row chunks of COPY text), every constraint holds, the values read
back as written, and what a simulated day costs in bytes is measured.

The test gets a database of its own on the session's embedded stack.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg
import pytest
from psycopg import sql

from hospital_stream import db
from hospital_stream.model import clinical, reference
from hospital_stream.wire.copy_text import encode_copy_rows
from tests.helpers import COHORT_START, make_cohort

pytestmark = [pytest.mark.integration]

CHUNK_ROWS = 5000
CLINICAL_TABLES = tuple(clinical.TABLE_COLUMNS)
#: the project's scale: 1,200 beds at ~85% and about 140 admissions a day
ADMISSIONS_PER_DAY = 140
STAY_SCALE = 1.45
MEASURED_DAYS = range(30, 34)


def copy_in(conn: psycopg.Connection, table: str, columns: tuple[str, ...], payload: bytes) -> None:
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        copy.write(payload)


def total_bytes(conn: psycopg.Connection, table: str) -> int:
    return int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()[0])


def test_generated_days_copy_in_and_cost_what_we_measure(database_url, record_property):
    assert "0005_create_clinical_tables" in db.migrate(database_url)
    cohort = make_cohort(
        seed=9, per_day=ADMISSIONS_PER_DAY, days=max(MEASURED_DAYS) + 1, stay_scale=STAY_SCALE
    )
    produced = dict.fromkeys(CLINICAL_TABLES, 0)
    first_rows: dict[str, list[tuple]] = {}
    present = []
    with psycopg.connect(database_url) as conn:
        for table, rows in (
            ("lab_tests", reference.lab_test_rows()),
            ("medicines", reference.medicine_rows()),
            ("procedure_codes", reference.procedure_code_rows()),
        ):
            columns = tuple(
                c.name
                for c in conn.execute(
                    sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table))
                ).description
            )
            copy_in(conn, table, columns, encode_copy_rows(rows))
        conn.commit()
        empty = {table: total_bytes(conn, table) for table in CLINICAL_TABLES}
        for day in MEASURED_DAYS:
            stays = cohort.stays(day)
            present.append(float(((stays.present_until - stays.present_from) / 1440).sum()))
            tables = clinical.clinical_day(np.random.default_rng([2020, day]), day, COHORT_START, stays)
            for table, cols in tables.items():
                for start in range(0, len(cols), CHUNK_ROWS):
                    copy_in(conn, table, cols.columns, cols.copy_text(start, start + CHUNK_ROWS))
                produced[table] += len(cols)
                first_rows.setdefault(table, cols.rows(0, 200))
            conn.commit()

        for table in CLINICAL_TABLES:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            assert count == (produced[table],), table
        # every code resolves in its reference table
        for table, column, reference_table in (
            ("lab_results", "test_code", "lab_tests"),
            ("prescriptions", "medicine_code", "medicines"),
            ("procedures", "procedure_code", "procedure_codes"),
        ):
            missing = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} r WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.{} = r.{})"
                ).format(
                    sql.Identifier(table),
                    sql.Identifier(reference_table),
                    sql.Identifier(column),
                    sql.Identifier(column),
                )
            ).fetchone()
            assert missing == (0,), table
        # values and timestamps read back as written
        stored = conn.execute(
            "SELECT lab_result_id, charted_at, value, flag FROM lab_results ORDER BY lab_result_id LIMIT 200"
        ).fetchall()
        assert stored == [
            (row[0], dt.datetime.fromisoformat(row[4]), row[5], row[6]) for row in first_rows["lab_results"]
        ]
        stored = conn.execute(
            "SELECT vital_sign_id, temperature::text, heart_rate FROM vital_signs"
            " ORDER BY vital_sign_id LIMIT 200"
        ).fetchall()
        assert stored == [(row[0], f"{row[9]:.1f}", row[5]) for row in first_rows["vital_signs"]]
        stored = conn.execute(
            "SELECT prescription_id, dose_value, starts_at, stops_at FROM prescriptions"
            " ORDER BY prescription_id LIMIT 200"
        ).fetchall()
        assert stored == [
            (row[0], row[5], dt.datetime.fromisoformat(row[9]), dt.datetime.fromisoformat(row[10]))
            for row in first_rows["prescriptions"]
        ]

        conn.execute("ANALYZE")
        days = len(MEASURED_DAYS)
        per_day = {table: (total_bytes(conn, table) - empty[table]) / days for table in CLINICAL_TABLES}
    total = sum(per_day.values())
    report = {
        "patient_days_per_day": round(sum(present) / days),
        "rows_per_day": {table: round(produced[table] / days) for table in CLINICAL_TABLES},
        "bytes_per_day": {table: round(size) for table, size in per_day.items()},
        "total_mb_per_day": round(total / 1e6, 2),
    }
    record_property("clinical_bytes_per_day", report)
    scale = f"~{report['patient_days_per_day']} patients and {ADMISSIONS_PER_DAY} admissions a day"
    print(f"\nclinical tables at {scale}:")
    for table in CLINICAL_TABLES:
        print(
            f"  {table:14s} {report['rows_per_day'][table]:7d} rows/day  {per_day[table] / 1e6:6.2f} MB/day"
            f"  ({per_day[table] / max(report['rows_per_day'][table], 1):.0f} B/row)"
        )
    print(f"  total {total / 1e6:.2f} MB/day, {total * 864 / 1e9:.2f} GB over 864 days")
    assert 900 <= report["patient_days_per_day"] <= 1100
    assert 2e6 <= total <= 8e6


def test_the_schema_refuses_rows_that_break_its_checks(database_url):
    db.migrate(database_url)
    bad_rows = {
        "vital_signs": (1, 1, 1, 1, "2020-01-01T00:00:00+02:00", 80, 120, 130, 16, 37.0, 98, 0),  # dia > sys
        "lab_results": (1, 1, 1, "718-7", "2020-01-01T00:00:00+02:00", 13.0, "X", 0),  # unknown flag
        "prescriptions": (
            1,
            1,
            1,
            "N02BE01",
            "Paracetamol",
            1000.0,
            "mg",
            "PO",
            "QID",
            "2020-01-02T00:00:00+02:00",
            "2020-01-01T00:00:00+02:00",
            0,  # stops before it starts
        ),
        "procedures": (1, 0, "0DTJ4ZZ", "2020-01-01T00:00:00+02:00", 0),  # seq starts at 1
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, row in bad_rows.items():
            with pytest.raises(psycopg.errors.CheckViolation):
                copy_in(conn, table, clinical.TABLE_COLUMNS[table], encode_copy_rows([row]))
