"""The data contract: every table a day's batch carries, its columns in COPY order, and how the
sink writes it. One registry; the model, the wire, the sink and the tools derive from it."""

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
            "admission_discharges",
            "admissions",
            ("admission_id", "discharged_at", "discharge_location", "died_at"),
            mode="update",
            key=("admission_id",),
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
            "diagnoses",
            "diagnoses",
            ("admission_id", "seq", "icd10_code", "sim_day"),
        ),
        *(TableSpec(name, name, columns) for name, columns in CLINICAL_COLUMNS.items()),
    )
}
TRANSFER_COLUMNS = TABLES["transfers"].columns

#: the tables only day 0 carries: the reference catalogues, the wards and the catchment
DAY_ZERO_TABLES = ("icd10_codes", "lab_tests", "medicines", "procedure_codes", "wards", "patients")
#: the order a day's tables are sent in, so foreign keys always point at stored rows
TABLE_ORDER = (
    "icd10_codes",
    "lab_tests",
    "medicines",
    "procedure_codes",
    "wards",
    "patients",
    "staff",
    "staff_assignments",
    "staff_assignment_ends",
    "staff_retirements",
    "bed_requests",
    "admissions",
    "transfers",
    "admission_discharges",
    "diagnoses",
    "lab_results",
    "vital_signs",
    "prescriptions",
    "procedures",
)

#: tables holding the hospital's records, in the order their foreign keys allow loading
DATA_TABLES = (
    "icd10_codes",
    "lab_tests",
    "medicines",
    "procedure_codes",
    "wards",
    "patients",
    "staff",
    "staff_assignments",
    "bed_requests",
    "admissions",
    "transfers",
    "diagnoses",
    "lab_results",
    "vital_signs",
    "prescriptions",
    "procedures",
    "ward_census",
)
PIPELINE_TABLES = ("simulation", "ingested_chunks", "sim_days", "dead_letters")
