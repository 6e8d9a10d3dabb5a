"""FHIR R4 bulk-data NDJSON, one file per resource type: the resource builders (plain dicts from
row dicts) and the export, a server-side cursor per source query written one JSON line a
resource. The FHIR model libraries are used only by the tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from psycopg import sql
from psycopg.rows import dict_row

from hospital_stream import db
from hospital_stream.model.calendar import SAST
from hospital_stream.tools.export.context import _atomic_file, _Context
from hospital_stream.tools.export.progress import Progress, Written

CURSOR_ROWS = 10_000  # rows per round trip of a FHIR source cursor
PROGRESS_EVERY_ROWS = 5_000


LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
ATC = "http://www.whocc.no/atc"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
# Identifier systems of this hospital. No public naming system exists for them (nor for South
# African ID numbers), so they are URNs of the project's own; a site would put its own here.
SA_ID_SYSTEM = "urn:hospital-stream:id:za-national-id"
PATIENT_ID_SYSTEM = "urn:hospital-stream:id:patient"
WARD_CODE_SYSTEM = "urn:hospital-stream:id:ward-code"
STAFF_ID_SYSTEM = "urn:hospital-stream:id:staff"
STAFFED_BEDS_EXTENSION = "urn:hospital-stream:extension:staffed-beds"

#: admission_type -> (Encounter.class v3-ActCode, Encounter.priority v3-ActPriority)
ENCOUNTER_CLASSES = {
    "EMERGENCY": ("EMER", "emergency", "EM", "emergency"),
    "URGENT": ("IMP", "inpatient encounter", "UR", "urgent"),
    "OBSERVATION": ("OBSENC", "observation encounter", "UR", "urgent"),
    "ELECTIVE": ("IMP", "inpatient encounter", "EL", "elective"),
    "SURGICAL SAME DAY": ("IMP", "inpatient encounter", "EL", "elective"),
}
#: discharge_location -> discharge-disposition code
DISCHARGE_DISPOSITIONS = {
    "HOME": ("home", "Home"),
    "HOME HEALTH CARE": ("home", "Home"),
    "SKILLED NURSING FACILITY": ("snf", "Skilled nursing facility"),
    "REHAB": ("rehab", "Rehabilitation"),
    "TRANSFER TO OTHER HOSPITAL": ("other-hcf", "Other healthcare facility"),
    "AGAINST ADVICE": ("aadvice", "Left against advice"),
    "CHRONIC/LONG TERM ACUTE CARE": ("long", "Long-term care"),
    "DIED": ("exp", "Expired"),
}
INTERPRETATIONS = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high"}
#: vital_signs column -> (id suffix, LOINC codes and names, UCUM code, unit shown)
VITAL_SIGNS = {
    "heart_rate": ("hr", (("8867-4", "Heart rate"),), "/min", "beats/minute"),
    "respiratory_rate": ("rr", (("9279-1", "Respiratory rate"),), "/min", "breaths/minute"),
    "temperature": ("temp", (("8310-5", "Body temperature"),), "Cel", "°C"),
    "spo2": (
        "spo2",
        (
            ("2708-6", "Oxygen saturation in Arterial blood"),
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "%",
        "%",
    ),
}
#: Observations written per vital_signs row: the four above and one blood-pressure panel
OBSERVATIONS_PER_VITAL_SIGNS = len(VITAL_SIGNS) + 1


def _pruned(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` without None, empty strings, lists and objects, which FHIR forbids (a NOT NULL
    text column may still hold ''). Written for speed: it runs on every resource."""
    kept = {}
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            value = _pruned(value)
        elif kind is list:
            value = [
                _pruned(item) if type(item) is dict else item
                for item in value
                if item is not None and item != ""
            ]
            value = [item for item in value if item != {}]
        elif value is None or value == "":
            continue
        if value or value == 0:  # keeps 0 and False
            kept[key] = value
    return kept


F = TypeVar("F", bound=Callable[..., Any])


def _resource_builder(build: F) -> F:
    """Prune what ``build(row, ...)`` returns (one resource or a list of them) when the row holds
    an empty string; the builders themselves leave out what is None or empty otherwise."""

    @functools.wraps(build)
    def wrapper(row: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        built = build(row, *args, **kwargs)
        if "" not in row.values():
            return built
        return [_pruned(r) for r in built] if type(built) is list else _pruned(built)

    return wrapper  # type: ignore[return-value]


def _ref(kind: str, ident: Any) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


def _instant(value: dt.datetime) -> str:
    return value.astimezone(SAST).isoformat()


def _period(start: Any, end: Any) -> dict[str, str]:
    period = {"start": _fhir_time(start)}
    if end is not None:
        period["end"] = _fhir_time(end)
    return period


def _fhir_time(value: dt.date | dt.datetime) -> str:
    return _instant(value) if isinstance(value, dt.datetime) else value.isoformat()


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _number(value: Any) -> int | float:
    """A JSON number for a database number (Decimal included)."""
    return value if isinstance(value, int) else float(value)


def _quantity(value: Any, unit: str | None, code: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": _number(value)}
    if unit:
        quantity["unit"] = unit
    if code:
        quantity.update(system=UCUM, code=code)
    return quantity


def _human_name(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"use": "official", "family": row["last_name"], "given": [row["first_name"]]}]


@_resource_builder
def patient(row: dict[str, Any]) -> dict[str, Any]:
    """A patients row (plus ``died_at`` from admissions) as a FHIR Patient."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row["patient_id"]),
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        _coding(TERMINOLOGY + "v2-0203", "NI", "National unique individual identifier")
                    ],
                    "text": "South African ID number",
                },
                "system": SA_ID_SYSTEM,
                "value": row["national_id"],
            },
            {
                "use": "usual",
                "type": {"coding": [_coding(TERMINOLOGY + "v2-0203", "MR", "Medical record number")]},
                "system": PATIENT_ID_SYSTEM,
                "value": str(row["patient_id"]),
            },
        ],
        "active": True,
        "name": _human_name(row),
        "gender": {"F": "female", "M": "male"}.get(row["sex"], "unknown"),
        "birthDate": row["birth_date"].isoformat(),
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": [row["address"]],
                "city": row["city"],
                "postalCode": row["postal_code"],
                "country": "ZA",
            }
        ],
    }
    if row.get("died_at") is not None:
        resource["deceasedDateTime"] = _instant(row["died_at"])
    return resource


@_resource_builder
def location(row: dict[str, Any]) -> dict[str, Any]:
    """A wards row as a FHIR Location of physical type ward, with its staffed beds."""
    return {
        "resourceType": "Location",
        "id": str(row["ward_id"]),
        "extension": [{"url": STAFFED_BEDS_EXTENSION, "valueInteger": row["beds"]}],
        "identifier": [{"system": WARD_CODE_SYSTEM, "value": row["code"]}],
        "status": "active",
        "name": row["name"],
        "description": f"{row['name']} ({row['specialty']}), {row['beds']} staffed beds",
        "mode": "instance",
        "type": [{"text": row["specialty"]}],
        "physicalType": {"coding": [_coding(TERMINOLOGY + "location-physical-type", "wa", "Ward")]},
    }


@_resource_builder
def practitioner(row: dict[str, Any]) -> dict[str, Any]:
    """A staff row as a FHIR Practitioner (inactive once retired)."""
    return {
        "resourceType": "Practitioner",
        "id": str(row["staff_id"]),
        "identifier": [{"system": STAFF_ID_SYSTEM, "value": str(row["staff_id"])}],
        "active": row["retired_on"] is None,
        "name": _human_name(row),
        "birthDate": row["birth_date"].isoformat(),
    }


@_resource_builder
def practitioner_role(row: dict[str, Any]) -> dict[str, Any]:
    """A staff_assignments row (plus the staff member's role and specialty) as a PractitionerRole."""
    # ends_on is the last day worked; one day before starts_on marks an assignment that never
    # began, which FHIR's period cannot say (its end may not precede its start).
    ends_on = row["ends_on"] if row["ends_on"] is None else max(row["ends_on"], row["starts_on"])
    return {
        "resourceType": "PractitionerRole",
        "id": str(row["assignment_id"]),
        "active": row["ends_on"] is None,
        "period": _period(row["starts_on"], ends_on),
        "practitioner": _ref("Practitioner", row["staff_id"]),
        "code": [{"text": row["role"]}],
        "specialty": [{"text": row["specialty"]}],
        "location": [_ref("Location", row["ward_id"])],
        "availabilityExceptions": f"{row['shift']} shift",
    }


@_resource_builder
def encounter(row: dict[str, Any]) -> dict[str, Any]:
    """An admissions row as a FHIR Encounter, its ward history from ``move_wards`` and
    ``move_times`` (the admission's transfers in time order) and its diagnoses' ``seq``s."""
    class_code, class_name, priority, priority_name = ENCOUNTER_CLASSES.get(
        row["admission_type"], ("IMP", "inpatient encounter", "R", "routine")
    )
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": str(row["admission_id"]),
        "status": (
            "entered-in-error"
            if row.get("cancelled_at") is not None
            else "in-progress"
            if row["discharged_at"] is None
            else "finished"
        ),
        "class": _coding(TERMINOLOGY + "v3-ActCode", class_code, class_name),
        "type": [{"text": row["admission_type"]}],
        "priority": {"coding": [_coding(TERMINOLOGY + "v3-ActPriority", priority, priority_name)]},
        "subject": _ref("Patient", row["patient_id"]),
        "period": _period(row["admitted_at"], row["discharged_at"]),
    }
    seqs = row.get("diagnosis_seqs") or []
    if seqs:
        resource["diagnosis"] = [
            {"condition": _ref("Condition", f"{row['admission_id']}-{seq}"), "rank": seq} for seq in seqs
        ]
    hospitalization: dict[str, Any] = {"admitSource": {"text": row["admission_location"]}}
    if row["discharge_location"]:
        code, name = DISCHARGE_DISPOSITIONS.get(row["discharge_location"], ("oth", "Other"))
        hospitalization["dischargeDisposition"] = {
            "coding": [_coding(TERMINOLOGY + "discharge-disposition", code, name)],
            "text": row["discharge_location"],
        }
    resource["hospitalization"] = hospitalization
    stays = ward_history(
        row["ward_id"],
        row["admitted_at"],
        row["discharged_at"],
        list(
            zip(
                row.get("move_types") or [],
                row.get("move_wards") or [],
                row.get("move_times") or [],
                strict=True,
            )
        ),
    )
    if stays:
        resource["location"] = stays
    return resource


def ward_history(
    admitting_ward: int,
    admitted_at: dt.datetime,
    discharged_at: dt.datetime | None,
    events: list[tuple[str, int | None, dt.datetime]],
) -> list[dict[str, Any]]:
    """Encounter.location from ADT events in time order: (event type, to_ward_id, at), with None
    for a discharge. Each ward's period runs from the event that moved the patient in to the next
    event; without events, the admitting ward holds the whole stay.

    A cancellation (A11, A12, A13) removes the event it cancels, as HL7 means it: the encounter
    shows the corrected history (a cancelled admission is the Encounter's entered-in-error
    status, not a location)."""
    moves: list[tuple[int | None, dt.datetime]] = []
    for event, ward, at in events:
        if event.startswith("cancel_"):
            del moves[-1:]
        else:
            moves.append((ward, at))
    if not events:
        moves = [(admitting_ward, admitted_at)]
    stays: list[dict[str, Any]] = []
    for ward, at in moves:
        if stays and "end" not in stays[-1]["period"]:
            stays[-1]["period"]["end"] = _instant(at)
            stays[-1]["status"] = "completed"
        if ward is not None:
            stays.append(
                {"location": _ref("Location", ward), "status": "active", "period": _period(at, None)}
            )
    if stays and discharged_at is not None and "end" not in stays[-1]["period"]:
        stays[-1]["period"]["end"] = _instant(discharged_at)
        stays[-1]["status"] = "completed"
    return stays


@_resource_builder
def condition(row: dict[str, Any]) -> dict[str, Any]:
    """A diagnoses row (plus its admission's patient and time) as a FHIR Condition."""
    code: dict[str, Any] = {"coding": [_coding(ICD10, row["icd10_code"], row.get("description"))]}
    if row.get("description"):
        code["text"] = row["description"]
    return {
        "resourceType": "Condition",
        "id": f"{row['admission_id']}-{row['seq']}",
        "verificationStatus": {"coding": [_coding(TERMINOLOGY + "condition-ver-status", "confirmed")]},
        "category": [
            {
                "coding": [
                    _coding(TERMINOLOGY + "condition-category", "encounter-diagnosis", "Encounter Diagnosis")
                ]
            }
        ],
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "recordedDate": _instant(row["admitted_at"]),
    }


def _observation(
    ident: str, category: str, row: dict[str, Any], code: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "category": [
            {
                "coding": [
                    _coding(
                        TERMINOLOGY + "observation-category", category, category.replace("-", " ").title()
                    )
                ]
            }
        ],
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "effectiveDateTime": _instant(row["charted_at"]),
        **fields,
    }


@_resource_builder
def lab_observation(row: dict[str, Any]) -> dict[str, Any]:
    """A lab_results row (plus its lab_tests name, unit and reference range) as an Observation."""
    name, unit = row.get("name"), row.get("unit")
    code: dict[str, Any] = {"coding": [_coding(LOINC, row["test_code"], name)]}
    if name:
        code["text"] = name
    fields: dict[str, Any] = {"valueQuantity": _quantity(row["value"], unit)}
    if row.get("ref_low") is not None and row.get("ref_high") is not None:
        fields["referenceRange"] = [
            {"low": _quantity(row["ref_low"], unit), "high": _quantity(row["ref_high"], unit)}
        ]
    flag = row["flag"]
    fields["interpretation"] = [
        {"coding": [_coding(TERMINOLOGY + "v3-ObservationInterpretation", flag, INTERPRETATIONS.get(flag))]}
    ]
    return _observation(f"lab-{row['lab_result_id']}", "laboratory", row, code, **fields)


@_resource_builder
def vital_observations(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A vital_signs row as FHIR vital-signs Observations: heart rate, respiratory rate,
    temperature, SpO2, and a blood-pressure panel with systolic and diastolic components."""
    ident = row["vital_sign_id"]
    found = []
    for column, (suffix, codes, ucum, unit) in VITAL_SIGNS.items():
        code = {"coding": [_coding(LOINC, c, n) for c, n in codes], "text": codes[0][1]}
        found.append(
            _observation(
                f"vs-{ident}-{suffix}",
                "vital-signs",
                row,
                code,
                valueQuantity=_quantity(row[column], unit, ucum),
            )
        )
    components = [
        {
            "code": {"coding": [_coding(LOINC, c, n)], "text": n},
            "valueQuantity": _quantity(row[column], "mmHg", "mm[Hg]"),
        }
        for column, c, n in (
            ("systolic_bp", "8480-6", "Systolic blood pressure"),
            ("diastolic_bp", "8462-4", "Diastolic blood pressure"),
        )
    ]
    panel: dict[str, Any] = {
        "coding": [_coding(LOINC, "85354-9", "Blood pressure panel with all children optional")],
        "text": "Blood pressure",
    }
    found.append(_observation(f"vs-{ident}-bp", "vital-signs", row, panel, component=components))
    return found


@_resource_builder
def medication_request(row: dict[str, Any], as_of: dt.datetime) -> dict[str, Any]:
    """A prescriptions row (plus its medicines name) as a MedicationRequest; active while its
    stop lies after ``as_of`` (the end of the last stored simulated day)."""
    dose = f"{_number(row['dose_value']):g}"
    return {
        "resourceType": "MedicationRequest",
        "id": str(row["prescription_id"]),
        "status": "active" if row["stops_at"] > as_of else "completed",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [_coding(ATC, row["medicine_code"], row.get("name"))],
            "text": row["drug"],
        },
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "authoredOn": _instant(row["starts_at"]),
        "dosageInstruction": [
            {
                "text": " ".join(filter(None, (dose, row["dose_unit"], row["route"], row["frequency"]))),
                "timing": {"code": {"text": row["frequency"]}},
                "route": {"text": row["route"]},
                "doseAndRate": [{"doseQuantity": _quantity(row["dose_value"], row["dose_unit"])}],
            }
        ],
        "dispenseRequest": {"validityPeriod": _period(row["starts_at"], row["stops_at"])},
    }


@_resource_builder
def procedure(row: dict[str, Any]) -> dict[str, Any]:
    """A procedures row (plus its admission's patient and the code's description) as a Procedure."""
    code: dict[str, Any] = {"coding": [_coding(ICD10_PCS, row["procedure_code"], row.get("description"))]}
    if row.get("description"):
        code["text"] = row["description"]
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": f"{row['admission_id']}-{row['seq']}",
        "status": "completed",
        "code": code,
        "subject": _ref("Patient", row["patient_id"]),
        "encounter": _ref("Encounter", row["admission_id"]),
        "performedDateTime": _instant(row["performed_at"]),
    }
    if row.get("category"):
        resource["category"] = {"text": row["category"]}
    return resource


@dataclasses.dataclass(frozen=True)
class _Source:
    table: str
    query: str  # {where} is the --from/--to condition on alias x
    build: Callable[[dict[str, Any], dt.datetime], Iterable[dict[str, Any]]]


FHIR_SOURCES: dict[str, tuple[_Source, ...]] = {
    "Patient": (
        _Source(
            "patients",
            "SELECT x.*, d.died_at FROM patients x LEFT JOIN ("
            " SELECT patient_id, max(died_at) AS died_at FROM admissions WHERE died_at IS NOT NULL"
            " GROUP BY patient_id) d ON d.patient_id = x.patient_id"
            " WHERE {where} ORDER BY x.patient_id",
            lambda row, _: [patient(row)],
        ),
    ),
    "Location": (
        _Source("wards", "SELECT x.* FROM wards x ORDER BY x.ward_id", lambda row, _: [location(row)]),
    ),
    "Practitioner": (
        _Source("staff", "SELECT x.* FROM staff x ORDER BY x.staff_id", lambda row, _: [practitioner(row)]),
    ),
    "PractitionerRole": (
        _Source(
            "staff_assignments",
            "SELECT x.*, s.role, s.specialty FROM staff_assignments x JOIN staff s ON s.staff_id = x.staff_id"
            " WHERE {where} ORDER BY x.assignment_id",
            lambda row, _: [practitioner_role(row)],
        ),
    ),
    "Encounter": (
        _Source(
            "admissions",
            "SELECT x.*, m.move_types, m.move_wards, m.move_times, g.diagnosis_seqs FROM admissions x"
            " LEFT JOIN LATERAL (SELECT"
            "  array_agg(t.event_type ORDER BY t.transferred_at, t.transfer_id) AS move_types,"
            "  array_agg(t.to_ward_id ORDER BY t.transferred_at, t.transfer_id) AS move_wards,"
            "  array_agg(t.transferred_at ORDER BY t.transferred_at, t.transfer_id) AS move_times"
            "  FROM transfers t WHERE t.admission_id = x.admission_id) m ON true"
            " LEFT JOIN LATERAL (SELECT array_agg(d.seq ORDER BY d.seq) AS diagnosis_seqs"
            "  FROM diagnoses d WHERE d.admission_id = x.admission_id) g ON true"
            " WHERE {where} ORDER BY x.admission_id",
            lambda row, _: [encounter(row)],
        ),
    ),
    "Condition": (
        _Source(
            "diagnoses",
            "SELECT x.*, a.patient_id, a.admitted_at, c.description FROM diagnoses x"
            " JOIN admissions a ON a.admission_id = x.admission_id"
            " LEFT JOIN icd10_codes c ON c.icd10_code = x.icd10_code"
            " WHERE {where} ORDER BY x.admission_id, x.seq",
            lambda row, _: [condition(row)],
        ),
    ),
    "Observation": (
        _Source(
            "lab_results",
            "SELECT x.*, t.name, t.unit, t.ref_low, t.ref_high FROM lab_results x"
            " LEFT JOIN lab_tests t ON t.test_code = x.test_code WHERE {where} ORDER BY x.lab_result_id",
            lambda row, _: [lab_observation(row)],
        ),
        _Source(
            "vital_signs",
            "SELECT x.* FROM vital_signs x WHERE {where} ORDER BY x.vital_sign_id",
            lambda row, _: vital_observations(row),
        ),
    ),
    "MedicationRequest": (
        _Source(
            "prescriptions",
            "SELECT x.*, m.name FROM prescriptions x"
            " LEFT JOIN medicines m ON m.medicine_code = x.medicine_code"
            " WHERE {where} ORDER BY x.prescription_id",
            lambda row, as_of: [medication_request(row, as_of)],
        ),
    ),
    "Procedure": (
        # procedures carry no foreign key: one whose admission is not stored is left out
        _Source(
            "procedures",
            "SELECT x.*, a.patient_id, c.description, c.category FROM procedures x"
            " JOIN admissions a ON a.admission_id = x.admission_id"
            " LEFT JOIN procedure_codes c ON c.procedure_code = x.procedure_code"
            " WHERE {where} ORDER BY x.admission_id, x.seq",
            lambda row, _: [procedure(row)],
        ),
    ),
}


def _export_fhir(context: _Context, resource_type: str, out_dir: Path, progress: Progress) -> Written:
    started, written = time.monotonic(), 0
    path = out_dir / f"{resource_type}.ndjson"
    sources = FHIR_SOURCES[resource_type]
    queries = [sql.SQL(s.query).format(where=context.where(s.table)) for s in sources]  # type: ignore[arg-type]
    as_of = _as_of(context)
    dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
    estimate = sum(context.estimate(q) for q in queries)
    with progress(resource_type, estimate) as advance, _atomic_file(path, "w") as handle:
        for source, query in zip(sources, queries, strict=True):
            pending = 0
            with context.conn.cursor(name=f"export_{source.table}", row_factory=dict_row) as cur:
                cur.itersize = CURSOR_ROWS
                cur.execute(query)
                for row in cur:
                    for resource in source.build(row, as_of):
                        handle.write(dumps(resource))
                        handle.write("\n")
                        written += 1
                    pending += 1
                    if pending == PROGRESS_EVERY_ROWS:
                        advance(pending)
                        pending = 0
            advance(pending)
    return Written(resource_type, path, written, path.stat().st_size, time.monotonic() - started)


def _as_of(context: _Context) -> dt.datetime:
    """The simulated clock: the end of the last complete stored day."""
    day = db.last_complete_day(context.conn)
    return dt.datetime.combine(context.start_date + dt.timedelta(days=day + 1), dt.time(), SAST)
