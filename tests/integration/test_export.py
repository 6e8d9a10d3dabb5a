"""`hospital-stream export` on a fresh embedded stack holding a short real run, plus a handful of
hand-written clinical rows (so the clinical exports are exercised whether or not the simulator
fills those tables): CSV, Parquet and FHIR round trips, date ranges, errors, a reader-only role
and the progress bar on a terminal."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import os
import pty
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B import get_fhir_model_class
from psycopg import sql

from hospital_stream import db
from hospital_stream.devstack import stack
from hospital_stream.devstack.isolated import free_port, stack_settings, traversable_tempdir
from hospital_stream.settings import Settings
from hospital_stream.tools import export
from hospital_stream.tools.export import tabular
from tests.helpers import cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
DAYS = 4
HOSPITAL = {"HOSPITAL_BEDS": "100", "HOSPITAL_POPULATION": "20000", "HOSPITAL_SEED": "77"}
SAST = dt.timezone(dt.timedelta(hours=2))
VALIDATE_PER_TYPE = 5_000  # at most about this many resources of a type go through the models
HAND_WRITTEN_LABS = {"9000000001", "9000000002", "9000000003", "9000000004"}
DRUG_WITH_EVERYTHING = 'Panado "500", tabs\nsecond line; ünïcode'

CLINICAL_REFERENCE_SQL = """
INSERT INTO lab_tests VALUES
    ('2823-3', 'Potassium', 'serum', 'mmol/L', 3.5, 5.1),
    ('718-7', 'Hemoglobin', 'blood', 'g/dL', 12, 17.5)
ON CONFLICT DO NOTHING;
INSERT INTO medicines VALUES ('N02BE01', 'paracetamol', 'tablet') ON CONFLICT DO NOTHING;
INSERT INTO procedure_codes VALUES
    ('0DTJ4ZZ', 'Resection of Appendix, Percutaneous Endoscopic Approach', 'surgery')
ON CONFLICT DO NOTHING;
"""


def insert_clinical_rows(url: str) -> None:
    """A few rows in every clinical table, on the run's own admissions, with edge values:
    microseconds, tiny floats, a one-decimal numeric, quotes, commas, a newline and ''."""
    with psycopg.connect(url) as conn:
        conn.execute(CLINICAL_REFERENCE_SQL)
        admissions = conn.execute(
            "SELECT admission_id, patient_id, ward_id FROM admissions ORDER BY admission_id LIMIT 3"
        ).fetchall()
        assert len(admissions) == 3
        (a1, p1, w1), (a2, p2, w2), (a3, _p3, _) = admissions
        conn.cursor().executemany(
            "INSERT INTO lab_results VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (9_000_000_001, a1, p1, "2823-3", "2020-01-02 10:15:30.123456+02", 2.9, "L", 1),
                (9_000_000_002, a1, p1, "718-7", "2020-01-03 06:00:00+02", 1e-7, "LL", 2),
                (9_000_000_003, a2, p2, "2823-3", "2020-01-03 23:59:59+02", 0.1, "N", 2),
                (9_000_000_004, a2, p2, "2823-3", "2020-01-04 00:00:00+02", 6.2, "HH", 3),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO vital_signs VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    9_000_000_001,
                    a1,
                    p1,
                    w1,
                    "2020-01-02 08:00:00+02",
                    88,
                    128,
                    82,
                    18,
                    Decimal("37.4"),
                    96,
                    1,
                ),
                (
                    9_000_000_002,
                    a2,
                    p2,
                    w2,
                    "2020-01-03 08:00:00+02",
                    120,
                    95,
                    60,
                    28,
                    Decimal("39.0"),
                    88,
                    2,
                ),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO prescriptions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    9_000_000_001,
                    a1,
                    p1,
                    "N02BE01",
                    DRUG_WITH_EVERYTHING,
                    0.5,
                    "g",
                    "PO",
                    "Q6H",
                    "2020-01-02 09:00:00+02",
                    "2020-01-04 09:00:00+02",
                    1,
                ),
                (
                    9_000_000_002,
                    a2,
                    p2,
                    "N02BE01",
                    "",
                    1,
                    "g",
                    "IV",
                    "once",
                    "2020-01-03 09:00+02",
                    "2099-01-01",
                    2,
                ),
            ],
        )
        conn.execute(
            "INSERT INTO procedures VALUES (%s, 91, '0DTJ4ZZ', '2020-01-03 13:00:00+02', 2),"
            " (%s, 91, '0DTJ4ZZ', '2020-01-02 13:00:00+02', 1)",
            (a1, a3),
        )


@pytest.fixture(scope="module")
def hospital() -> Iterator[dict[str, str]]:
    """A fresh embedded stack (own home and ports) holding a DAYS-day run; its environment."""
    base = traversable_tempdir("hospital-stream-test-")
    settings: Settings = stack_settings(base / "home")
    try:
        stack.up(settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
        env.update(settings.to_env())
        env.update(HOSPITAL)
        env.update({"HOSPITAL_WEB_PORT": str(free_port()), "HOSPITAL_RUN_UNTIL_DAY": ""})
        run = cli(env, "run", "--days", str(DAYS), "--speed", "max")
        assert run.returncode == 0, run.stdout + run.stderr
        insert_clinical_rows(env["HOSPITAL_DATABASE_URL"])
        yield env
    finally:
        stack.down(settings)
        shutil.rmtree(base, ignore_errors=True)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[
                0
            ]
            for table in export.EXPORT_TABLES
        }


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def csv_dir(hospital, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("csv")
    result = cli(hospital, "export", "--format", "csv", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def parquet_dir(hospital, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parquet")
    result = cli(hospital, "export", "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def fhir_dir(hospital, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fhir")
    result = cli(hospital, "export", "--format", "fhir", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()
    assert len(summary) == len(export.RESOURCE_TYPES) + 1
    assert summary[-1].startswith(f"exported {len(export.RESOURCE_TYPES)} resource types to {out}: ")
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- CSV -------------------------------------------------------------------------------------


def test_csv_has_every_row_of_every_table_with_a_header(hospital, csv_dir):
    expected = counts(hospital["HOSPITAL_DATABASE_URL"])
    assert expected["patients"] == 20_000 and expected["admissions"] > 10
    assert sorted(p.name for p in csv_dir.iterdir()) == sorted(f"{t}.csv" for t in export.EXPORT_TABLES)
    for table, count in expected.items():
        assert len(read_csv(csv_dir / f"{table}.csv")) == count, table
    header = (csv_dir / "admissions.csv").read_text().splitlines()[0]
    assert header.startswith("admission_id,patient_id,ward_id,admitted_at,")


def test_csv_values_keep_times_numbers_nulls_and_awkward_text(hospital, csv_dir):
    url = hospital["HOSPITAL_DATABASE_URL"]
    labs = {r["lab_result_id"]: r for r in read_csv(csv_dir / "lab_results.csv")}
    assert labs["9000000001"]["charted_at"] == "2020-01-02 10:15:30.123456+02"
    assert float(labs["9000000002"]["value"]) == 1e-7 and labs["9000000003"]["value"] == "0.1"
    vitals = {r["vital_sign_id"]: r for r in read_csv(csv_dir / "vital_signs.csv")}
    assert vitals["9000000002"]["temperature"] == "39.0"
    drugs = {r["prescription_id"]: r["drug"] for r in read_csv(csv_dir / "prescriptions.csv")}
    assert drugs["9000000001"] == DRUG_WITH_EVERYTHING and drugs["9000000002"] == ""
    assert '""' in (csv_dir / "prescriptions.csv").read_text()  # '' is quoted, unlike NULL

    open_stays = rows(url, "SELECT admission_id FROM admissions WHERE discharged_at IS NULL")
    assert open_stays
    admissions = {r["admission_id"]: r for r in read_csv(csv_dir / "admissions.csv")}
    for (admission_id,) in open_stays:
        assert admissions[str(admission_id)]["discharged_at"] == ""
    first = rows(url, "SELECT admission_id, admitted_at FROM admissions ORDER BY admission_id LIMIT 1")[0]
    stored = dt.datetime.fromisoformat(admissions[str(first[0])]["admitted_at"] + ":00")
    assert stored == first[1] and stored.utcoffset() == dt.timedelta(hours=2)
    assert list(admissions) == sorted(admissions, key=int)  # primary-key order


# --- Parquet ---------------------------------------------------------------------------------

INTENDED_TYPES = {
    ("admissions", "admission_id"): pa.int64(),
    ("admissions", "ward_id"): pa.int32(),
    ("admissions", "admitted_at"): pa.timestamp("us", tz="UTC"),
    ("admissions", "discharge_location"): pa.string(),
    ("patients", "birth_date"): pa.date32(),
    ("patients", "national_id"): pa.string(),
    ("transfers", "seen_in_stream"): pa.bool_(),
    ("vital_signs", "heart_rate"): pa.int16(),
    ("vital_signs", "temperature"): pa.decimal128(3, 1),
    ("lab_results", "value"): pa.float64(),
    ("staff_assignments", "ends_on"): pa.date32(),
}


def test_parquet_has_every_row_with_the_intended_column_types(hospital, parquet_dir):
    expected = counts(hospital["HOSPITAL_DATABASE_URL"])
    for table, count in expected.items():
        parquet = pq.ParquetFile(parquet_dir / f"{table}.parquet")
        assert parquet.metadata.num_rows == count, table
    for (table, name), arrow_type in INTENDED_TYPES.items():
        assert pq.read_schema(parquet_dir / f"{table}.parquet").field(name).type == arrow_type, (table, name)
    field = pq.read_schema(parquet_dir / "vital_signs.parquet").field("temperature")
    assert field.metadata == {b"pg_type": b"numeric(3,1)"}


@pytest.mark.parametrize(
    "table", ["admissions", "transfers", "staff_assignments", "lab_results", "vital_signs", "prescriptions"]
)
def test_parquet_rows_equal_the_database_rows(hospital, parquet_dir, table):
    stored = rows(hospital["HOSPITAL_DATABASE_URL"], f"SELECT * FROM {table}")
    exported = pq.read_table(parquet_dir / f"{table}.parquet").to_pylist()
    assert sorted(tuple(r.values()) for r in exported) == sorted(stored)
    if table == "prescriptions":
        assert {r["drug"] for r in exported} >= {DRUG_WITH_EVERYTHING, ""}
    if table == "admissions":
        assert any(r["discharged_at"] is None for r in exported)


def test_parquet_streams_a_big_table_in_many_row_groups(hospital, tmp_path, monkeypatch):
    """In-process, with 64 KB blocks: patients (20,000 rows) arrive in many row groups."""
    monkeypatch.setattr(tabular, "COPY_BLOCK_BYTES", 64 << 10)
    plan = export.plan("parquet", tmp_path, ("patients",), None, None)
    seen: list[int] = []

    def progress(label: str, estimate: int) -> Any:
        import contextlib

        assert label == "patients" and estimate > 0  # the planner's guess
        return contextlib.nullcontext(seen.append)

    with db.connect(hospital["HOSPITAL_DATABASE_URL"]) as conn:
        (written,) = list(export.run(conn, plan, progress, dt.date(2020, 1, 1)))
    parquet = pq.ParquetFile(written.path)
    assert written.rows == parquet.metadata.num_rows == sum(seen) == 20_000
    assert parquet.metadata.num_row_groups == len(seen) > 5
    stored = rows(hospital["HOSPITAL_DATABASE_URL"], "SELECT * FROM patients ORDER BY patient_id")
    assert [tuple(r.values()) for r in parquet.read().to_pylist()] == stored
    assert not list(tmp_path.glob("*.part"))


# --- FHIR ------------------------------------------------------------------------------------


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def empty_values(node: Any) -> Iterator[Any]:
    """Nulls, empty strings, arrays and objects anywhere: FHIR JSON has none."""
    if node is None or node == "" or node == [] or node == {}:
        yield node
    elif isinstance(node, dict | list):
        for value in node.values() if isinstance(node, dict) else node:
            yield from empty_values(value)


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_fhir_resources_validate_match_the_rows_and_refer_to_exported_ids(hospital, fhir_dir):
    url = hospital["HOSPITAL_DATABASE_URL"]
    n = counts(url)
    procedures = rows(url, "SELECT count(*) FROM procedures JOIN admissions USING (admission_id)")[0][0]
    expected = {
        "Patient": n["patients"],
        "Location": n["wards"],
        "Practitioner": n["staff"],
        "PractitionerRole": n["staff_assignments"],
        "Encounter": n["admissions"],
        "Condition": n["diagnoses"],
        "Observation": n["lab_results"] + export.OBSERVATIONS_PER_VITAL_SIGNS * n["vital_signs"],
        "MedicationRequest": n["prescriptions"],
        "Procedure": procedures,
    }
    assert all(expected[t] > 0 for t in expected), expected
    assert sorted(p.name for p in fhir_dir.iterdir()) == sorted(f"{t}.ndjson" for t in export.RESOURCE_TYPES)
    exported: dict[str, list[dict[str, Any]]] = {t: read_ndjson(fhir_dir / f"{t}.ndjson") for t in expected}
    ids = {t: {r["id"] for r in resources} for t, resources in exported.items()}
    for resource_type, resources in exported.items():
        assert len(resources) == len(ids[resource_type]) == expected[resource_type], resource_type
        model = get_fhir_model_class(resource_type)
        every = max(1, len(resources) // VALIDATE_PER_TYPE)  # the models take ~1 ms a resource
        for index, resource in enumerate(resources):
            assert resource["resourceType"] == resource_type
            if index % every == 0 or "9000000" in resource["id"]:
                model.model_validate(resource)
                assert not list(empty_values(resource)), resource
            for reference in references(resource):
                kind, _, ident = reference.partition("/")
                assert ident in ids[kind], (resource_type, resource["id"], reference)


def test_fhir_encounters_follow_the_transfers(hospital, fhir_dir):
    url = hospital["HOSPITAL_DATABASE_URL"]
    moves = rows(
        url,
        "SELECT admission_id, array_agg(to_ward_id ORDER BY transferred_at, transfer_id)"
        " FILTER (WHERE to_ward_id IS NOT NULL) FROM transfers GROUP BY admission_id",
    )
    encounters = {int(r["id"]): r for r in read_ndjson(fhir_dir / "Encounter.ndjson")}
    assert any(len(wards) > 1 for _, wards in moves)
    for admission_id, wards in moves:
        history = encounters[admission_id]["location"]
        assert [int(stay["location"]["reference"].split("/")[1]) for stay in history] == wards
        for before, after in itertools.pairwise(history):
            assert before["period"]["end"] == after["period"]["start"]
    discharged = dict(rows(url, "SELECT admission_id, discharged_at IS NOT NULL FROM admissions"))
    for admission_id, encounter in encounters.items():
        assert encounter["status"] == ("finished" if discharged[admission_id] else "in-progress")
        assert encounter["class"]["code"] in {"EMER", "IMP", "OBSENC"}


def test_fhir_clinical_resources_carry_their_codes(fhir_dir):
    observations = read_ndjson(fhir_dir / "Observation.ndjson")
    lab = next(o for o in observations if o["id"] == "lab-9000000001")
    assert lab["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "2823-3",
        "display": "Potassium",
    }
    assert lab["valueQuantity"] == {"value": 2.9, "unit": "mmol/L"}
    assert lab["effectiveDateTime"] == "2020-01-02T10:15:30.123456+02:00"
    assert lab["interpretation"][0]["coding"][0]["code"] == "L"
    bp = next(o for o in observations if o["id"] == "vs-9000000001-bp")
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [128, 82]
    temperature = next(o for o in observations if o["id"] == "vs-9000000002-temp")
    assert temperature["valueQuantity"]["value"] == 39.0
    requests = {r["id"]: r for r in read_ndjson(fhir_dir / "MedicationRequest.ndjson")}
    assert requests["9000000001"]["medicationCodeableConcept"]["text"] == DRUG_WITH_EVERYTHING
    assert requests["9000000001"]["status"] == "completed"  # stopped before the run's last day ended
    assert requests["9000000002"]["status"] == "active"


# --- date ranges -----------------------------------------------------------------------------


def test_from_to_keep_the_rows_of_those_days(hospital, tmp_path):
    url = hospital["HOSPITAL_DATABASE_URL"]
    result = cli(hospital, "export", "--out", str(tmp_path), "--from", "2020-01-02", "--to", "2020-01-03")
    assert result.returncode == 0, result.stderr
    low = dt.datetime(2020, 1, 2, tzinfo=SAST)
    high = dt.datetime(2020, 1, 4, tzinfo=SAST)
    for table, column in (
        ("admissions", "admitted_at"),
        ("transfers", "transferred_at"),
        ("lab_results", "charted_at"),
        ("prescriptions", "starts_at"),
        ("procedures", "performed_at"),
    ):
        exported = read_csv(tmp_path / f"{table}.csv")
        expected = rows(
            url, f"SELECT count(*) FROM {table} WHERE {column} >= %s AND {column} < %s", low, high
        )
        assert len(exported) == expected[0][0], table
        for row in exported:
            assert low <= dt.datetime.fromisoformat(row[column] + ":00") < high, (table, row)
    ours = {r["lab_result_id"] for r in read_csv(tmp_path / "lab_results.csv")} & HAND_WRITTEN_LABS
    assert ours == {"9000000001", "9000000002", "9000000003"}  # 2020-01-03 23:59:59 is in, 01-04 not
    assert {int(r["sim_day"]) for r in read_csv(tmp_path / "diagnoses.csv")} <= {1, 2}
    assert {r["starts_on"] for r in read_csv(tmp_path / "staff_assignments.csv")} <= {
        "2020-01-02",
        "2020-01-03",
    }
    assert len(read_csv(tmp_path / "wards.csv")) == counts(url)["wards"]  # no time column: whole
    patients = {r["patient_id"] for r in read_csv(tmp_path / "patients.csv")}
    referred = {
        r["patient_id"]
        for t in ("admissions", "bed_requests", "transfers")
        for r in read_csv(tmp_path / f"{t}.csv")
    }
    assert referred and referred <= patients < {str(i) for i in range(1, 20_001)}

    fhir = cli(
        hospital,
        "export",
        "--format",
        "fhir",
        "--out",
        str(tmp_path / "fhir"),
        "--tables",
        "encounter,Patient",
        "--from",
        "2020-01-02",
        "--to",
        "2020-01-03",
    )
    assert fhir.returncode == 0, fhir.stderr
    assert sorted(p.name for p in (tmp_path / "fhir").iterdir()) == ["Encounter.ndjson", "Patient.ndjson"]
    encounters = read_ndjson(tmp_path / "fhir" / "Encounter.ndjson")
    assert len(encounters) == len(read_csv(tmp_path / "admissions.csv"))
    assert {r["id"] for r in read_ndjson(tmp_path / "fhir" / "Patient.ndjson")} == patients


# --- errors, roles, progress -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tables", "wards,nope"], "unknown table nope; choose from icd10_codes, lab_tests, medicines,"),
        (["--format", "fhir", "--tables", "wards"], "unknown resource type wards; choose from Patient,"),
        (["--format", "xml"], "unknown format 'xml'; choose from csv, parquet, fhir"),
        (["--from", "2020-02-30"], "--from '2020-02-30' is not a date; write YYYY-MM-DD"),
        (["--from", "2020-01-05", "--to", "2020-01-04"], "--from 2020-01-05 is after --to 2020-01-04"),
        (["--out-is-a-file"], "is not a directory"),
        (["--out-under-a-file"], "Not a directory"),
    ],
)
def test_bad_options_are_one_line_and_exit_non_zero(hospital, tmp_path, args, message):
    a_file = tmp_path / "file"
    a_file.write_text("")
    out = str(tmp_path / "out")
    if args == ["--out-is-a-file"]:
        args, out = [], str(a_file)
    elif args == ["--out-under-a-file"]:
        args, out = [], str(a_file / "out")
    result = cli(hospital, "export", "--out", out, *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_reader_only_role_exports_everything(hospital, tmp_path):
    owner_url = hospital["HOSPITAL_DATABASE_URL"]
    name = "reader_" + uuid.uuid4().hex[:8]
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE hospital_reader").format(sql.Identifier(name)))
    env = {**hospital, "HOSPITAL_READER_DATABASE_URL": owner_url.replace("//hospital@", f"//{name}@")}
    for fmt in ("parquet", "fhir"):
        result = cli(env, "export", "--format", fmt, "--out", str(tmp_path / fmt))
        assert result.returncode == 0, result.stdout + result.stderr
    exported = pq.ParquetFile(tmp_path / "parquet" / "lab_results.parquet").metadata.num_rows
    assert exported == counts(owner_url)["lab_results"] >= len(HAND_WRITTEN_LABS)
    with (
        psycopg.connect(env["HOSPITAL_READER_DATABASE_URL"]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DELETE FROM lab_results")


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(hospital, tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "hospital-stream"), "export", "--out", str(tmp_path / "tty"), "--tables", "patients"],
        env={**hospital, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    text = screen.decode()
    assert "patients (~" in text and "100%" in text and "#" in text
    piped = cli(hospital, "export", "--out", str(tmp_path / "pipe"), "--tables", "patients")
    assert piped.returncode == 0 and "#" not in piped.stdout and "100%" not in piped.stdout
    assert piped.stdout.splitlines()[0].startswith(f"{tmp_path / 'pipe' / 'patients.csv'}: 20,000 rows, ")
