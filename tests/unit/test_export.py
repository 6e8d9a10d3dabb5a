"""The export's pure parts: options, date filters, Parquet types, and FHIR resources built from
row dicts, each validated against the FHIR R4B models of fhir.resources."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from hospital_stream.errors import ConfigError
from hospital_stream.tools import export
from hospital_stream.tools.export import context, fhir, tabular

SAST = dt.timezone(dt.timedelta(hours=2))


def at(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2020, 1, day, hour, minute, tzinfo=SAST)


def assert_nothing_empty(node: object, where: str = "") -> None:
    """FHIR JSON has no nulls, empty strings, arrays or objects (the models accept some)."""
    assert node is not None and node != "" and node != [] and node != {}, where
    if isinstance(node, dict):
        for key, value in node.items():
            assert_nothing_empty(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            assert_nothing_empty(value, f"{where}[{index}]")


def valid(resource: dict) -> dict:
    """The resource as it would be read back from a line of NDJSON, validated by the R4B model."""
    assert_nothing_empty(resource)
    parsed = json.loads(json.dumps(resource, ensure_ascii=False))
    model = get_fhir_model_class(parsed["resourceType"]).model_validate(parsed)
    assert model.id == parsed["id"]
    return parsed


# --- options ---------------------------------------------------------------------------------


def test_formats_are_parsed_and_an_unknown_one_lists_the_choices():
    assert export.parse_format(" Parquet ") == "parquet"
    with pytest.raises(ConfigError, match="unknown format 'xml'; choose from csv, parquet, fhir"):
        export.parse_format("xml")


def test_tables_default_to_all_and_follow_the_export_order():
    assert export.parse_names("csv", ()) == export.EXPORT_TABLES
    assert export.parse_names("fhir", ()) == export.RESOURCE_TYPES
    chosen = export.parse_names("parquet", ("transfers,wards", " admissions ", "wards"))
    assert chosen == ("wards", "admissions", "transfers")


def test_every_data_table_is_exportable_with_references_before_their_users():
    tables = export.EXPORT_TABLES
    assert len(set(tables)) == len(tables)
    for table in ("lab_results", "vital_signs", "prescriptions", "procedures"):
        assert tables.index(table) > tables.index("admissions")
    for reference, user in (("lab_tests", "lab_results"), ("medicines", "prescriptions")):
        assert tables.index(reference) < tables.index(user)


def test_an_unknown_table_names_it_and_lists_the_valid_ones():
    with pytest.raises(ConfigError) as caught:
        export.parse_names("csv", ("wards,nope,Admissions",))
    message = str(caught.value)
    assert message.startswith("unknown table nope; choose from icd10_codes, lab_tests,")
    assert "lab_results" in message and "\n" not in message


def test_fhir_takes_resource_types_in_any_case_but_not_table_names():
    assert export.parse_names("fhir", ("observation", "PATIENT")) == ("Patient", "Observation")
    with pytest.raises(ConfigError, match="unknown resource type lab_results; choose from Patient, "):
        export.parse_names("fhir", ("lab_results",))
    with pytest.raises(ConfigError, match="names nothing"):
        export.parse_names("fhir", (" , ",))


def test_dates_are_iso_and_inclusive_and_either_end_may_be_open():
    assert export.parse_range("2020-01-03", "2020-01-03") == export.DateRange(
        dt.date(2020, 1, 3), dt.date(2020, 1, 3)
    )
    assert export.parse_range(None, "2020-02-01") == export.DateRange(None, dt.date(2020, 2, 1))
    assert not export.parse_range(None, "")
    with pytest.raises(ConfigError, match=r"--from '2020-13-01' is not a date; write YYYY-MM-DD"):
        export.parse_range("2020-13-01", None)
    with pytest.raises(ConfigError, match="--to 'yesterday' is not a date"):
        export.parse_range(None, "yesterday")
    with pytest.raises(ConfigError, match="--from 2020-02-02 is after --to 2020-02-01"):
        export.parse_range("2020-02-02", "2020-02-01")


def test_a_range_covers_whole_days_in_sast_and_maps_to_simulated_days():
    dates = export.DateRange(dt.date(2020, 1, 3), dt.date(2020, 1, 5))
    assert dates.instants() == (at(3), at(6))
    assert dates.instants()[0].utcoffset() == dt.timedelta(hours=2)
    assert dates.sim_days(dt.date(2020, 1, 1)) == (2, 4)
    assert export.DateRange(None, dt.date(2020, 1, 1)).instants() == (None, at(2))


def test_out_must_be_a_writable_directory(tmp_path):
    nested = tmp_path / "a" / "b"
    assert export.prepare_out_dir(nested) == nested and nested.is_dir()
    assert list(nested.iterdir()) == []  # the write probe is gone
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=f"--out {a_file} is not a directory"):
        export.prepare_out_dir(a_file)
    with pytest.raises(ConfigError, match=f"cannot write to {a_file / 'sub'}: Not a directory"):
        export.prepare_out_dir(a_file / "sub")


def test_plan_validates_every_option_before_anything_connects(tmp_path):
    plan = export.plan("FHIR", str(tmp_path / "out"), ("Encounter",), "2020-01-02", None)
    assert plan == export.ExportPlan(
        "fhir", tmp_path / "out", ("Encounter",), export.DateRange(dt.date(2020, 1, 2))
    )
    with pytest.raises(ConfigError, match="is after"):
        export.plan("csv", str(tmp_path), (), "2020-01-02", "2020-01-01")


# --- date filters ----------------------------------------------------------------------------


def where(table: str, first: dt.date | None, last: dt.date | None) -> str:
    snapshot = context._Context(None, export.DateRange(first, last), dt.date(2020, 1, 1))  # type: ignore[arg-type]
    return snapshot.where(table).as_string(None)


def test_each_table_is_filtered_on_its_own_time_column():
    d3, d5 = dt.date(2020, 1, 3), dt.date(2020, 1, 5)
    assert where("admissions", d3, d5) == (
        '"x"."admitted_at" >= \'2020-01-03 00:00:00+02:00\'::timestamptz'
        ' AND "x"."admitted_at" < \'2020-01-06 00:00:00+02:00\'::timestamptz'
    )
    assert where("lab_results", None, d5) == '"x"."charted_at" < \'2020-01-06 00:00:00+02:00\'::timestamptz'
    assert where("staff_assignments", d3, d5) == (
        '"x"."starts_on" >= \'2020-01-03\'::date AND "x"."starts_on" <= \'2020-01-05\'::date'
    )
    assert where("diagnoses", d3, None) == '"x"."sim_day" >= 2'
    assert where("ward_census", d3, d5) == '"x"."sim_day" >= 2 AND "x"."sim_day" <= 4'
    for table in ("wards", "staff", "icd10_codes", "lab_tests"):
        assert where(table, d3, d5) == "TRUE"
    for table in export.EXPORT_TABLES:
        assert where(table, None, None) == "TRUE"


def test_patients_in_a_range_are_the_ones_its_rows_refer_to():
    text = where("patients", dt.date(2020, 1, 3), None)
    assert text.startswith(
        '"x".patient_id IN (SELECT s.patient_id FROM "bed_requests" s WHERE "s"."requested_at"'
    )
    for table in (*context.PATIENT_SOURCES, *context.ADMISSION_SOURCES):
        assert f'FROM "{table}" s' in text
    assert text.count(" UNION ") == len(context.PATIENT_SOURCES) + len(context.ADMISSION_SOURCES) - 1
    assert 'JOIN admissions a USING (admission_id) WHERE "s"."sim_day" >= 2' in text


# --- Parquet ---------------------------------------------------------------------------------


def column(type_name: str, typmod: int = -1) -> context._Column:
    return context._Column("c", type_name, type_name, typmod)


def test_postgres_types_map_to_the_intended_arrow_types():
    import pyarrow as pa

    assert tabular.arrow_type(column("bigint")) == pa.int64()
    assert tabular.arrow_type(column("integer")) == pa.int32()
    assert tabular.arrow_type(column("smallint")) == pa.int16()
    assert tabular.arrow_type(column("double precision")) == pa.float64()
    assert tabular.arrow_type(column("boolean")) == pa.bool_()
    assert tabular.arrow_type(column("date")) == pa.date32()
    assert tabular.arrow_type(column("timestamp with time zone")) == pa.timestamp("us", tz="UTC")
    assert tabular.arrow_type(column("numeric", ((3 << 16) | 1) + 4)) == pa.decimal128(3, 1)
    assert tabular.arrow_type(column("numeric")) == pa.float64()
    for name in ("text", "character", "jsonb", "bytea"):
        assert tabular.arrow_type(column(name)) == pa.string()


def test_the_copy_stream_reads_blocks_in_any_size_of_piece():
    stream = tabular._CopyStream(iter([b"ab", memoryview(b""), b"cde", b"f"]))
    assert not stream.at_end()
    reader = io.BufferedReader(stream, buffer_size=4)
    assert reader.read(3) == b"abc" and reader.read() == b"def" and stream.at_end()
    assert tabular._CopyStream(iter([b""])).at_end()


# --- progress --------------------------------------------------------------------------------


def test_plain_progress_lines_when_not_a_terminal(capsys):
    progress = export.ConsoleProgress(tty=False, interval=0.0)
    with progress("lab_results", 100) as advance:
        advance(40)
        advance(60)
    assert capsys.readouterr().out.splitlines() == [
        "lab_results: 40 rows of about 100",
        "lab_results: 100 rows of about 100",
    ]


def test_a_summary_is_one_line_with_rows_bytes_seconds_and_rates():
    line = export.Written("admissions", Path("out/admissions.csv"), 20_000, 3_000_000, 2.0).summary()
    assert line == "out/admissions.csv: 20,000 rows, 3.0 MB in 2.0 s (10,000 rows/s, 1.5 MB/s)"
    assert "resources" in export.Written("Patient", Path("Patient.ndjson"), 1, 1, 1.0).summary()


# --- FHIR resources --------------------------------------------------------------------------

PATIENT_ROW = {
    "patient_id": 17,
    "national_id": "9605219723084",
    "first_name": "S'fiso",
    "last_name": "Ndlovu",
    "sex": "M",
    "birth_date": dt.date(1996, 5, 21),
    "address": "287 Adelaide Street",
    "city": "eGoli",
    "postal_code": "2001",
    "sim_day": 0,
    "died_at": None,
}
ADMISSION_ROW = {
    "admission_id": 3_000_001,
    "patient_id": 17,
    "ward_id": 1,
    "admitted_at": at(4, 8, 30),
    "admission_type": "EMERGENCY",
    "admission_location": "EMERGENCY ROOM",
    "discharged_at": at(9, 11),
    "discharge_location": "DIED",
    "died_at": at(9, 11),
    "cancelled_at": None,
    "sim_day": 3,
    # admit to the emergency unit, move to ward 3, then to ward 7, discharge
    "move_types": ["admit", "transfer", "transfer", "discharge"],
    "move_wards": [1, 3, 7, None],
    "move_times": [at(4, 8, 30), at(4, 14), at(6, 9), at(9, 11)],
    "diagnosis_seqs": [1, 2],
}


def test_patient_has_the_sa_id_name_gender_birth_date_and_address():
    resource = valid(fhir.patient(PATIENT_ROW))
    national = resource["identifier"][0]
    assert national["system"] == fhir.SA_ID_SYSTEM and national["value"] == "9605219723084"
    assert national["type"]["coding"][0]["code"] == "NI"
    assert resource["name"] == [{"use": "official", "family": "Ndlovu", "given": ["S'fiso"]}]
    assert resource["gender"] == "male" and resource["birthDate"] == "1996-05-21"
    assert resource["address"][0] == {
        "use": "home",
        "type": "physical",
        "line": ["287 Adelaide Street"],
        "city": "eGoli",
        "postalCode": "2001",
        "country": "ZA",
    }
    assert "deceasedDateTime" not in resource
    dead = valid(fhir.patient({**PATIENT_ROW, "sex": "F", "died_at": at(9, 11)}))
    assert dead["gender"] == "female" and dead["deceasedDateTime"] == "2020-01-09T11:00:00+02:00"


def test_encounter_has_class_period_disposition_diagnoses_and_ward_history():
    resource = valid(fhir.encounter(ADMISSION_ROW))
    assert resource["id"] == "3000001" and resource["status"] == "finished"
    assert resource["class"]["code"] == "EMER"
    assert resource["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert resource["subject"] == {"reference": "Patient/17"}
    assert resource["period"] == {"start": "2020-01-04T08:30:00+02:00", "end": "2020-01-09T11:00:00+02:00"}
    assert resource["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "exp"
    assert [d["condition"]["reference"] for d in resource["diagnosis"]] == [
        "Condition/3000001-1",
        "Condition/3000001-2",
    ]
    assert resource["location"] == [
        {
            "location": {"reference": f"Location/{ward}"},
            "status": "completed",
            "period": {"start": start, "end": end},
        }
        for ward, start, end in (
            (1, "2020-01-04T08:30:00+02:00", "2020-01-04T14:00:00+02:00"),
            (3, "2020-01-04T14:00:00+02:00", "2020-01-06T09:00:00+02:00"),
            (7, "2020-01-06T09:00:00+02:00", "2020-01-09T11:00:00+02:00"),
        )
    ]


@pytest.mark.parametrize(
    ("admission_type", "expected"),
    [
        ("EMERGENCY", "EMER"),
        ("URGENT", "IMP"),
        ("OBSERVATION", "OBSENC"),
        ("ELECTIVE", "IMP"),
        ("SURGICAL SAME DAY", "IMP"),
        ("SOMETHING NEW", "IMP"),
    ],
)
def test_encounter_class_follows_the_admission_type(admission_type, expected):
    resource = valid(fhir.encounter({**ADMISSION_ROW, "admission_type": admission_type}))
    assert resource["class"]["code"] == expected


def test_an_open_stay_is_in_progress_with_its_current_ward_active():
    row = {
        **ADMISSION_ROW,
        "discharged_at": None,
        "discharge_location": None,
        "died_at": None,
        "move_types": ["admit", "transfer"],
        "move_wards": [1, 3],
        "move_times": [at(4, 8, 30), at(4, 14)],
        "diagnosis_seqs": None,
    }
    resource = valid(fhir.encounter(row))
    assert resource["status"] == "in-progress" and "end" not in resource["period"]
    assert "dischargeDisposition" not in resource["hospitalization"] and "diagnosis" not in resource
    assert resource["location"][-1] == {
        "location": {"reference": "Location/3"},
        "status": "active",
        "period": {"start": "2020-01-04T14:00:00+02:00"},
    }
    no_moves = valid(fhir.encounter({**row, "move_types": None, "move_wards": None, "move_times": None}))
    assert no_moves["location"] == [
        {
            "location": {"reference": "Location/1"},
            "status": "active",
            "period": {"start": "2020-01-04T08:30:00+02:00"},
        }
    ]


def test_cancelled_events_leave_the_corrected_ward_history():
    """A12 and A13 remove the transfer and discharge they cancel; the stay goes on."""
    row = {
        **ADMISSION_ROW,
        "move_types": ["admit", "transfer", "cancel_transfer", "transfer", "discharge", "cancel_discharge"],
        "move_wards": [1, 7, 1, 3, None, 3],
        "move_times": [at(4, 8, 30), at(4, 12), at(4, 13), at(4, 14), at(8, 10), at(8, 11)],
    }
    resource = valid(fhir.encounter(row))
    assert [(s["location"]["reference"], s["period"]) for s in resource["location"]] == [
        ("Location/1", {"start": "2020-01-04T08:30:00+02:00", "end": "2020-01-04T14:00:00+02:00"}),
        ("Location/3", {"start": "2020-01-04T14:00:00+02:00", "end": "2020-01-09T11:00:00+02:00"}),
    ]


def test_a_cancelled_admission_is_an_encounter_entered_in_error():
    row = {
        **ADMISSION_ROW,
        "discharged_at": None,
        "discharge_location": None,
        "died_at": None,
        "cancelled_at": at(4, 9),
        "move_types": ["admit", "cancel_admit"],
        "move_wards": [1, None],
        "move_times": [at(4, 8, 30), at(4, 9)],
        "diagnosis_seqs": None,
    }
    resource = valid(fhir.encounter(row))
    assert resource["status"] == "entered-in-error" and "location" not in resource


def test_location_is_a_ward_with_its_beds():
    row = {
        "ward_id": 3,
        "code": "MED",
        "name": "Medical Ward",
        "specialty": "medicine",
        "beds": 40,
        "sim_day": 0,
    }
    resource = valid(fhir.location(row))
    assert resource["physicalType"]["coding"][0]["code"] == "wa"
    assert resource["extension"] == [{"url": fhir.STAFFED_BEDS_EXTENSION, "valueInteger": 40}]
    assert "40 staffed beds" in resource["description"]


def test_practitioner_and_role_with_period_ward_and_specialty():
    staff = {
        "staff_id": 5_000_002,
        "role": "nurse",
        "specialty": "medicine",
        "first_name": "Lerato",
        "last_name": "Mokoena",
        "birth_date": dt.date(1970, 2, 3),
        "hired_on": dt.date(2001, 1, 1),
        "retired_on": dt.date(2035, 2, 3),
        "sim_day": 5,
    }
    assert valid(fhir.practitioner(staff))["active"] is False
    assignment = {
        "assignment_id": 7,
        "staff_id": 5_000_002,
        "ward_id": 3,
        "shift": "night",
        "starts_on": dt.date(2020, 1, 2),
        "ends_on": None,
        "sim_day": 1,
        "role": "nurse",
        "specialty": "medicine",
    }
    role = valid(fhir.practitioner_role(assignment))
    assert role["active"] is True and role["period"] == {"start": "2020-01-02"}
    assert role["practitioner"] == {"reference": "Practitioner/5000002"}
    assert role["location"] == [{"reference": "Location/3"}]
    assert role["specialty"] == [{"text": "medicine"}]
    ended = valid(fhir.practitioner_role({**assignment, "ends_on": dt.date(2020, 3, 1)}))
    assert ended["active"] is False and ended["period"]["end"] == "2020-03-01"
    never_began = valid(fhir.practitioner_role({**assignment, "ends_on": dt.date(2020, 1, 1)}))
    assert never_began["period"] == {"start": "2020-01-02", "end": "2020-01-02"}


def test_condition_is_an_icd10_encounter_diagnosis():
    row = {
        "admission_id": 3_000_001,
        "seq": 2,
        "icd10_code": "J18.9",
        "sim_day": 3,
        "patient_id": 17,
        "admitted_at": at(4, 8, 30),
        "description": "Pneumonia, unspecified",
    }
    resource = valid(fhir.condition(row))
    assert resource["id"] == "3000001-2"
    assert resource["code"]["coding"] == [
        {"system": "http://hl7.org/fhir/sid/icd-10", "code": "J18.9", "display": "Pneumonia, unspecified"}
    ]
    assert resource["encounter"] == {"reference": "Encounter/3000001"}
    assert resource["category"][0]["coding"][0]["code"] == "encounter-diagnosis"


def test_lab_observation_has_loinc_quantity_reference_range_and_interpretation():
    row = {
        "lab_result_id": 90_000_001,
        "admission_id": 3_000_001,
        "patient_id": 17,
        "test_code": "2823-3",
        "charted_at": at(5, 6),
        "value": 2.9,
        "flag": "L",
        "sim_day": 4,
        "name": "Potassium",
        "unit": "mmol/L",
        "ref_low": 3.5,
        "ref_high": 5.1,
    }
    resource = valid(fhir.lab_observation(row))
    assert resource["id"] == "lab-90000001" and resource["status"] == "final"
    assert resource["category"][0]["coding"][0]["code"] == "laboratory"
    assert resource["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}
    ]
    assert resource["valueQuantity"] == {"value": 2.9, "unit": "mmol/L"}
    assert resource["referenceRange"] == [
        {"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}
    ]
    interpretation = resource["interpretation"][0]["coding"][0]
    assert interpretation["code"] == "L"
    assert interpretation["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    assert resource["effectiveDateTime"] == "2020-01-05T06:00:00+02:00"
    unknown_test = valid(fhir.lab_observation({**row, "name": None, "unit": None, "ref_low": None}))
    assert unknown_test["valueQuantity"] == {"value": 2.9} and "referenceRange" not in unknown_test


def test_vital_signs_become_five_vital_sign_observations_with_a_blood_pressure_panel():
    row = {
        "vital_sign_id": 80_000_004,
        "admission_id": 3_000_001,
        "patient_id": 17,
        "ward_id": 3,
        "charted_at": at(5, 6),
        "heart_rate": 88,
        "systolic_bp": 128,
        "diastolic_bp": 82,
        "respiratory_rate": 18,
        "temperature": Decimal("37.4"),
        "spo2": 96,
        "sim_day": 4,
    }
    resources = [valid(r) for r in fhir.vital_observations(row)]
    assert len(resources) == export.OBSERVATIONS_PER_VITAL_SIGNS == 5
    assert len({r["id"] for r in resources}) == 5
    by_code = {r["code"]["coding"][0]["code"]: r for r in resources}
    assert set(by_code) == {"8867-4", "9279-1", "8310-5", "2708-6", "85354-9"}
    for resource in resources:
        assert resource["category"][0]["coding"][0]["code"] == "vital-signs"
        assert resource["subject"] == {"reference": "Patient/17"}
    assert by_code["8867-4"]["valueQuantity"] == {
        "value": 88,
        "unit": "beats/minute",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert by_code["8310-5"]["valueQuantity"]["value"] == 37.4
    assert by_code["8310-5"]["valueQuantity"]["code"] == "Cel"
    assert [c["code"] for c in by_code["2708-6"]["code"]["coding"]] == ["2708-6", "59408-5"]
    panel = by_code["85354-9"]
    assert "valueQuantity" not in panel
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in panel["component"]] == [
        ("8480-6", 128),
        ("8462-4", 82),
    ]
    assert panel["component"][0]["valueQuantity"]["code"] == "mm[Hg]"


def test_medication_request_has_atc_dosage_and_validity_and_a_status_from_the_clock():
    row = {
        "prescription_id": 70_000_001,
        "admission_id": 3_000_001,
        "patient_id": 17,
        "medicine_code": "J01CR02",
        "drug": "Augmentin 1.2 g IV",
        "dose_value": 1.2,
        "dose_unit": "g",
        "route": "IV",
        "frequency": "Q8H",
        "starts_at": at(4, 10),
        "stops_at": at(9, 10),
        "sim_day": 3,
        "name": "amoxicillin and beta-lactamase inhibitor",
    }
    resource = valid(fhir.medication_request(row, as_of=at(7)))
    assert resource["status"] == "active" and resource["intent"] == "order"
    assert resource["medicationCodeableConcept"]["coding"] == [
        {
            "system": "http://www.whocc.no/atc",
            "code": "J01CR02",
            "display": "amoxicillin and beta-lactamase inhibitor",
        }
    ]
    dosage = resource["dosageInstruction"][0]
    assert dosage["text"] == "1.2 g IV Q8H"
    assert dosage["route"] == {"text": "IV"}
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 1.2, "unit": "g"}
    assert resource["dispenseRequest"]["validityPeriod"] == {
        "start": "2020-01-04T10:00:00+02:00",
        "end": "2020-01-09T10:00:00+02:00",
    }
    assert resource["authoredOn"] == "2020-01-04T10:00:00+02:00"
    assert valid(fhir.medication_request(row, as_of=at(10)))["status"] == "completed"


def test_procedure_is_icd10_pcs_coded():
    row = {
        "admission_id": 3_000_001,
        "seq": 1,
        "procedure_code": "0DTJ4ZZ",
        "performed_at": at(5, 13),
        "sim_day": 4,
        "patient_id": 17,
        "description": "Resection of Appendix, Percutaneous Endoscopic Approach",
        "category": "surgery",
    }
    resource = valid(fhir.procedure(row))
    assert resource["id"] == "3000001-1" and resource["status"] == "completed"
    assert resource["code"]["coding"][0]["system"] == "http://www.cms.gov/Medicare/Coding/ICD10"
    assert resource["performedDateTime"] == "2020-01-05T13:00:00+02:00"
    assert resource["category"] == {"text": "surgery"}


def test_every_resource_type_has_sources_and_a_builder():
    assert set(fhir.FHIR_SOURCES) == set(export.RESOURCE_TYPES)
    for sources in fhir.FHIR_SOURCES.values():
        for source in sources:
            assert source.table in export.EXPORT_TABLES
            assert "{where}" in source.query or source.table not in context.TIME_COLUMNS


def test_empty_text_is_left_out_because_fhir_forbids_empty_strings():
    resource = valid(fhir.patient({**PATIENT_ROW, "city": "", "postal_code": ""}))
    assert "city" not in resource["address"][0] and resource["address"][0]["line"] == ["287 Adelaide Street"]
    row = {
        "prescription_id": 1,
        "admission_id": 2,
        "patient_id": 3,
        "medicine_code": "N02BE01",
        "drug": "",
        "dose_value": 500,
        "dose_unit": "mg",
        "route": "",
        "frequency": "Q6H",
        "starts_at": at(4),
        "stops_at": at(5),
        "sim_day": 3,
        "name": None,
    }
    request = valid(fhir.medication_request(row, as_of=at(7)))
    assert request["medicationCodeableConcept"] == {"coding": [{"system": fhir.ATC, "code": "N02BE01"}]}
    assert (
        request["dosageInstruction"][0]["text"] == "500 mg Q6H"
        and "route" not in request["dosageInstruction"][0]
    )
