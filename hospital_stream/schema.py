"""The data contract: the one registry of tables.

Two views of the same tables:

* :data:`STORED_TABLES`, the tables of the hospital's records in PostgreSQL, in the order their
  foreign keys allow loading: the column that says when each row happened (``export
  --from/--to``), the bytes a row takes on disk (``plan``), whether only day 0 writes it;
* :data:`TABLES`, what a day's batch carries, in the order it is sent: each kind of row with its
  columns in COPY order, the stored table it lands in and how the sink writes it there.

The model's encoders, the wire, the sink, the table rules, ``plan``, ``export`` and
``validate`` derive from these; a test checks them against the migrated catalog.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# --- the tables a day's batch carries -----------------------------------------------------------

#: the clinical tables the model renders column by column (model.clinical)
CLINICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "lab_results": (
        "lab_result_id",
        "admission_id",
        "patient_id",
        "test_code",
        "charted_at",
        "value",
        "flag",
        "sim_day",
    ),
    "vital_signs": (
        "vital_sign_id",
        "admission_id",
        "patient_id",
        "ward_id",
        "charted_at",
        "heart_rate",
        "systolic_bp",
        "diastolic_bp",
        "respiratory_rate",
        "temperature",
        "spo2",
        "sim_day",
    ),
    "prescriptions": (
        "prescription_id",
        "admission_id",
        "patient_id",
        "medicine_code",
        "drug",
        "dose_value",
        "dose_unit",
        "route",
        "frequency",
        "starts_at",
        "stops_at",
        "sim_day",
    ),
    "procedures": ("admission_id", "seq", "procedure_code", "performed_at", "sim_day"),
}

WriteMode = Literal["insert", "merge_transfers", "update"]


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One kind of batch row: its columns in COPY order and how the sink writes it."""

    name: str
    target: str
    columns: tuple[str, ...]
    mode: WriteMode = "insert"
    #: for ``update`` rows: the columns that find the row to update in ``target``
    key: tuple[str, ...] = ()

    def position(self, column: str) -> int:
        """Where ``column`` stands in a row of this table (rows are read by name, not number)."""
        return self.columns.index(column)


@dataclasses.dataclass(frozen=True)
class StoredTable:
    """A table of the hospital's records in PostgreSQL."""

    name: str
    #: the column holding when a row happened or began, compared by its date in the hospital's
    #: time (``sim_day`` counts days from the run's start); None: a table exported whole
    time_column: str | None
    #: pg_total_relation_size / rows after a 40-day default run (PostgreSQL 15, 8 kB pages)
    bytes_per_row: float
    #: written on day 0 only (the reference catalogues, the wards and the catchment)
    day_zero: bool = False
    #: the rows carry ``sim_day``, the day whose batch stored them
    has_sim_day: bool = True


STORED_TABLES: dict[str, StoredTable] = {
    table.name: table
    for table in (
        StoredTable("icd10_codes", None, 345, day_zero=True, has_sim_day=False),
        StoredTable("lab_tests", None, 697, day_zero=True, has_sim_day=False),
        StoredTable("medicines", None, 280, day_zero=True, has_sim_day=False),
        StoredTable("procedure_codes", None, 669, day_zero=True, has_sim_day=False),
        StoredTable("wards", None, 1586, day_zero=True),
        StoredTable("patients", None, 180.5, day_zero=True),
        StoredTable("staff", None, 151),
        StoredTable("staff_assignments", "starts_on", 172.5),
        StoredTable("bed_requests", "requested_at", 125),
        StoredTable("admissions", "admitted_at", 245),  # discharges update every row once
        StoredTable("transfers", "transferred_at", 158.6),
        StoredTable("diagnoses", "sim_day", 95),
        StoredTable("lab_results", "charted_at", 116.8),
        StoredTable("vital_signs", "charted_at", 126.2),
        StoredTable("prescriptions", "starts_at", 161.1),
        StoredTable("procedures", "performed_at", 112.1),
        StoredTable("ward_census", "sim_day", 105.7),
    )
}
#: the tables holding the hospital's records, in the order their foreign keys allow loading
DATA_TABLES = tuple(STORED_TABLES)
#: the reference catalogues: stored once, on day 0, with no day of their own
REFERENCE_TABLES = tuple(t.name for t in STORED_TABLES.values() if not t.has_sim_day)
#: the pipeline's own tables: the run, the chunk ledger, the days and the dead letters
PIPELINE_TABLES = ("simulation", "ingested_chunks", "sim_days", "dead_letters")
#: bytes per row of the chunk ledger (one row per stored batch chunk)
LEDGER_BYTES_PER_ROW = 158.6

#: the kinds of batch row, in the order a day sends them, so foreign keys always point at
#: stored rows
TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("icd10_codes", "icd10_codes", ("icd10_code", "description", "category")),
        TableSpec("lab_tests", "lab_tests", ("test_code", "name", "specimen", "unit", "ref_low", "ref_high")),
        TableSpec("medicines", "medicines", ("medicine_code", "name", "form")),
        TableSpec("procedure_codes", "procedure_codes", ("procedure_code", "description", "category")),
        TableSpec("wards", "wards", ("ward_id", "code", "name", "specialty", "beds", "sim_day")),
        TableSpec(
            "patients",
            "patients",
            (
                "patient_id",
                "national_id",
                "first_name",
                "last_name",
                "sex",
                "birth_date",
                "address",
                "city",
                "postal_code",
                "sim_day",
            ),
        ),
        TableSpec(
            "staff",
            "staff",
            ("staff_id", "role", "specialty", "first_name", "last_name", "birth_date", "hired_on", "sim_day"),
        ),
        TableSpec(
            "staff_assignments",
            "staff_assignments",
            ("assignment_id", "staff_id", "ward_id", "shift", "starts_on", "sim_day"),
        ),
        TableSpec(
            "staff_assignment_ends",
            "staff_assignments",
            ("assignment_id", "staff_id", "ends_on"),
            mode="update",
            key=("assignment_id", "staff_id"),
        ),
        TableSpec(
            "staff_retirements",
            "staff",
            ("staff_id", "retired_on"),
            mode="update",
            key=("staff_id",),
        ),
        TableSpec(
            "bed_requests",
            "bed_requests",
            ("request_id", "patient_id", "ward_id", "requested_at", "admission_type", "outcome", "sim_day"),
        ),
        TableSpec(
            "admissions",
            "admissions",
            (
                "admission_id",
                "patient_id",
                "ward_id",
                "admitted_at",
                "admission_type",
                "admission_location",
                "cancelled_at",
                "sim_day",
            ),
        ),
        TableSpec(
            "transfers",
            "transfers",
            (
                "transfer_id",
                "admission_id",
                "patient_id",
                "event_type",
                "from_ward_id",
                "to_ward_id",
                "transferred_at",
                "sim_day",
            ),
            mode="merge_transfers",
        ),
        TableSpec(
            "admission_discharges",
            "admissions",
            ("admission_id", "discharged_at", "discharge_location", "died_at"),
            mode="update",
            key=("admission_id",),
        ),
        TableSpec(
            "diagnoses",
            "diagnoses",
            ("admission_id", "seq", "icd10_code", "sim_day"),
        ),
        *(TableSpec(name, name, columns) for name, columns in CLINICAL_COLUMNS.items()),
    )
}
TRANSFER_COLUMNS = TABLES["transfers"].columns
TABLE_ORDER = tuple(TABLES)
#: the batch tables only day 0 carries
DAY_ZERO_TABLES = tuple(name for name, spec in TABLES.items() if STORED_TABLES[spec.target].day_zero)
