"""The stored data's invariants, each one SQL query that returns its violations.

Only completely stored days are judged: a day still arriving is not yet a violation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from hospital_stream import db

SAMPLE = 5
TZ = "Africa/Johannesburg"


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    description: str
    #: a query returning one row per violation; %(day)s is the last complete day
    query: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    check: Check
    violations: int
    sample: list[tuple[Any, ...]]

    @property
    def ok(self) -> bool:
        return self.violations == 0


CHECKS = (
    Check(
        "transfer references",
        "every transfer names a stored admission of the same patient and stored wards",
        """SELECT t.transfer_id, t.admission_id, t.patient_id, a.patient_id AS admission_patient
           FROM transfers t LEFT JOIN admissions a USING (admission_id)
           WHERE t.sim_day <= %(day)s AND (
                 a.admission_id IS NULL OR a.patient_id <> t.patient_id
              OR (t.from_ward_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM wards w WHERE w.ward_id = t.from_ward_id))
              OR (t.to_ward_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM wards w WHERE w.ward_id = t.to_ward_id)))""",
    ),
    Check(
        "ward capacity",
        "replaying every admit, transfer, discharge and cancellation, no ward is ever above its beds or "
        "below zero",
        """WITH moves AS (
               SELECT transfer_id, to_ward_id AS ward_id, 1 AS delta FROM transfers
               WHERE to_ward_id IS NOT NULL AND sim_day <= %(day)s
               UNION ALL
               SELECT transfer_id, from_ward_id, -1 FROM transfers
               WHERE from_ward_id IS NOT NULL AND sim_day <= %(day)s),
           running AS (
               SELECT ward_id, transfer_id,
                      sum(delta) OVER (PARTITION BY ward_id ORDER BY transfer_id, delta) AS occupied
               FROM moves)
           SELECT r.ward_id, r.transfer_id, r.occupied, w.beds
           FROM running r JOIN wards w USING (ward_id)
           WHERE r.occupied < 0 OR r.occupied > w.beds""",
    ),
    Check(
        "cancellations",
        "every A11/A12/A13 cancellation reverses its admission's event just before it, and an "
        "admission is marked cancelled exactly when its admit was cancelled",
        """WITH ordered AS (
               SELECT t.*, lag(event_type) OVER w AS before_type, lag(from_ward_id) OVER w AS before_from,
                      lag(to_ward_id) OVER w AS before_to
               FROM transfers t WHERE sim_day <= %(day)s
               WINDOW w AS (PARTITION BY admission_id ORDER BY transferred_at, transfer_id))
           SELECT 'transfer' AS kind, admission_id, transfer_id, event_type FROM ordered
           WHERE starts_with(event_type, 'cancel_') AND (
                 before_type IS DISTINCT FROM substr(event_type, 8)
              OR before_from IS DISTINCT FROM to_ward_id OR before_to IS DISTINCT FROM from_ward_id)
           UNION ALL
           SELECT 'admission', a.admission_id, c.transfer_id, 'cancelled_at' FROM admissions a
           FULL JOIN (SELECT * FROM transfers WHERE event_type = 'cancel_admit' AND sim_day <= %(day)s) c
               USING (admission_id)
           WHERE (a.sim_day <= %(day)s OR c.sim_day IS NOT NULL)
             AND a.cancelled_at IS DISTINCT FROM c.transferred_at""",
    ),
    Check(
        "retirement age",
        "no staff member is assigned on or after their 65th birthday",
        """SELECT a.assignment_id, a.staff_id, s.birth_date, a.starts_on, a.ends_on
           FROM staff_assignments a JOIN staff s USING (staff_id)
           WHERE a.sim_day <= %(day)s
             AND coalesce(a.ends_on, (SELECT sim_date FROM sim_days WHERE sim_day = %(day)s))
                 >= CASE WHEN to_char(s.birth_date, 'MM-DD') = '02-29'  -- 65 years on: never a leap year
                         THEN make_date(extract(year FROM s.birth_date)::int + 65, 3, 1)
                         ELSE (s.birth_date + interval '65 years')::date END""",
    ),
    Check(
        "retirements replaced",
        "every retirement is followed the same day by a hire of the same role and specialty",
        """SELECT r.staff_id, r.role, r.specialty, r.retired_on FROM staff r
           WHERE r.retired_on <= (SELECT sim_date FROM sim_days WHERE sim_day = %(day)s) AND NOT EXISTS (
               SELECT 1 FROM staff h WHERE h.role = r.role AND h.specialty = r.specialty
                  AND h.hired_on = r.retired_on AND h.staff_id <> r.staff_id)""",
    ),
    Check(
        "stream matches batch",
        "every streamed transfer of a complete day is in that day's batch with identical fields",
        """SELECT transfer_id, sim_day, seen_in_batch, stream_matches_batch FROM transfers
           WHERE seen_in_stream AND sim_day <= %(day)s
             AND (NOT seen_in_batch OR stream_matches_batch IS NOT TRUE)""",
    ),
    Check(
        "occupancy table equals census",
        "the Faust occupancy table's end-of-day count equals the census computed from transfers",
        """WITH grid AS (
               SELECT d.sim_day, w.ward_id FROM sim_days d CROSS JOIN wards w WHERE d.sim_day <= %(day)s),
           daily AS (
               SELECT sim_day, ward_id, sum(delta) AS delta FROM (
                   SELECT sim_day, to_ward_id AS ward_id, 1 AS delta FROM transfers
                   WHERE to_ward_id IS NOT NULL
                   UNION ALL
                   SELECT sim_day, from_ward_id, -1 FROM transfers WHERE from_ward_id IS NOT NULL) m
               GROUP BY sim_day, ward_id),
           census AS (
               SELECT g.sim_day, g.ward_id,
                      sum(coalesce(x.delta, 0)) OVER (PARTITION BY g.ward_id ORDER BY g.sim_day) AS occupied
               FROM grid g LEFT JOIN daily x USING (sim_day, ward_id))
           SELECT c.sim_day, c.ward_id, c.occupied AS computed, f.occupied AS faust_table
           FROM census c LEFT JOIN ward_census f USING (sim_day, ward_id)
           WHERE f.occupied IS DISTINCT FROM c.occupied""",
    ),
    Check(
        "rows per day",
        "every complete day stored exactly the rows the simulator produced for it",
        """WITH expected AS (
               SELECT d.sim_day, d.sim_date, e.key AS table_name, e.value::int AS rows
               FROM sim_days d, jsonb_each_text(d.row_counts) e WHERE d.sim_day <= %(day)s),
           actual AS (
               SELECT 'icd10_codes' AS t, 0 AS sim_day, count(*) AS n FROM icd10_codes
               UNION ALL SELECT 'wards', sim_day, count(*) FROM wards GROUP BY sim_day
               UNION ALL SELECT 'patients', sim_day, count(*) FROM patients GROUP BY sim_day
               UNION ALL SELECT 'staff', sim_day, count(*) FROM staff GROUP BY sim_day
               UNION ALL SELECT 'staff_assignments', sim_day, count(*) FROM staff_assignments GROUP BY sim_day
               UNION ALL SELECT 'bed_requests', sim_day, count(*) FROM bed_requests GROUP BY sim_day
               UNION ALL SELECT 'admissions', sim_day, count(*) FROM admissions GROUP BY sim_day
               UNION ALL SELECT 'transfers', sim_day, count(*) FROM transfers
                   WHERE seen_in_batch GROUP BY sim_day
               UNION ALL SELECT 'diagnoses', sim_day, count(*) FROM diagnoses GROUP BY sim_day
               UNION ALL SELECT 'lab_tests', 0, count(*) FROM lab_tests
               UNION ALL SELECT 'medicines', 0, count(*) FROM medicines
               UNION ALL SELECT 'procedure_codes', 0, count(*) FROM procedure_codes
               UNION ALL SELECT 'lab_results', sim_day, count(*) FROM lab_results GROUP BY sim_day
               UNION ALL SELECT 'vital_signs', sim_day, count(*) FROM vital_signs GROUP BY sim_day
               UNION ALL SELECT 'prescriptions', sim_day, count(*) FROM prescriptions GROUP BY sim_day
               UNION ALL SELECT 'procedures', sim_day, count(*) FROM procedures GROUP BY sim_day
               UNION ALL SELECT 'staff_retirements', d.sim_day, count(*) FROM staff s
                   JOIN sim_days d ON d.sim_date = s.retired_on GROUP BY d.sim_day
               UNION ALL SELECT 'staff_assignment_ends', d.sim_day, count(*) FROM staff_assignments a
                   JOIN sim_days d ON d.sim_date = a.ends_on + 1 GROUP BY d.sim_day
               UNION ALL SELECT 'admission_discharges', d.sim_day, count(*) FROM admissions a
                   JOIN sim_days d ON d.sim_date = (a.discharged_at AT TIME ZONE 'Africa/Johannesburg')::date
                   GROUP BY d.sim_day)
           SELECT e.sim_day, e.table_name, e.rows AS expected, coalesce(a.n, 0) AS stored
           FROM expected e LEFT JOIN actual a ON a.t = e.table_name AND a.sim_day = e.sim_day
           WHERE coalesce(a.n, 0) <> e.rows""",
    ),
    Check(
        "no duplicates",
        "no admission, transfer event or diagnosis is stored twice under different keys",
        """SELECT 'admission' AS kind, patient_id::text, admitted_at::text, count(*) FROM admissions
               GROUP BY patient_id, admitted_at HAVING count(*) > 1
           UNION ALL
           SELECT 'transfer', admission_id::text, transferred_at::text || ' ' || event_type, count(*)
               FROM transfers GROUP BY admission_id, event_type, transferred_at, from_ward_id, to_ward_id
               HAVING count(*) > 1
           UNION ALL
           SELECT 'diagnosis', admission_id::text, icd10_code, count(*) FROM diagnoses
               GROUP BY admission_id, icd10_code HAVING count(*) > 1""",
    ),
    Check(
        "deaths and discharges",
        "a death has a time no later than discharge; no discharge precedes its admission",
        """SELECT admission_id, admitted_at, discharged_at, died_at, discharge_location FROM admissions
           WHERE (discharge_location = 'DIED') <> (died_at IS NOT NULL)
              OR died_at > discharged_at OR discharged_at <= admitted_at""",
    ),
    Check(
        "clinical references",
        "every lab result, vital sign, prescription and procedure names a stored admission of the "
        "same patient and a known test, ward, medicine or procedure code",
        """SELECT 'lab_results' AS kind, x.lab_result_id AS id, x.admission_id FROM lab_results x
               LEFT JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s AND (a.patient_id IS DISTINCT FROM x.patient_id
                  OR NOT EXISTS (SELECT 1 FROM lab_tests t WHERE t.test_code = x.test_code))
           UNION ALL
           SELECT 'vital_signs', x.vital_sign_id, x.admission_id FROM vital_signs x
               LEFT JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s AND (a.patient_id IS DISTINCT FROM x.patient_id
                  OR NOT EXISTS (SELECT 1 FROM wards w WHERE w.ward_id = x.ward_id))
           UNION ALL
           SELECT 'prescriptions', x.prescription_id, x.admission_id FROM prescriptions x
               LEFT JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s AND (a.patient_id IS DISTINCT FROM x.patient_id
                  OR NOT EXISTS (SELECT 1 FROM medicines m WHERE m.medicine_code = x.medicine_code))
           UNION ALL
           SELECT 'procedures', x.seq, x.admission_id FROM procedures x
               LEFT JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s AND (a.admission_id IS NULL OR NOT EXISTS (
                   SELECT 1 FROM procedure_codes c WHERE c.procedure_code = x.procedure_code))""",
    ),
    Check(
        "clinical times inside stays",
        "lab results and vital signs are charted, and prescriptions start, between admission and discharge",
        """SELECT 'lab_results' AS kind, x.lab_result_id AS id, x.charted_at AS at FROM lab_results x
               JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s
                 AND (x.charted_at < a.admitted_at OR x.charted_at > coalesce(a.discharged_at, 'infinity'))
           UNION ALL
           SELECT 'vital_signs', x.vital_sign_id, x.charted_at FROM vital_signs x
               JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s
                 AND (x.charted_at < a.admitted_at OR x.charted_at > coalesce(a.discharged_at, 'infinity'))
           UNION ALL
           SELECT 'prescriptions', x.prescription_id, x.starts_at FROM prescriptions x
               JOIN admissions a USING (admission_id)
               WHERE x.sim_day <= %(day)s
                 AND (x.starts_at < a.admitted_at OR x.starts_at > coalesce(a.discharged_at, 'infinity'))""",
    ),
    Check(
        "census wards known",
        "every census row names a stored ward",
        "SELECT sim_day, ward_id FROM ward_census WHERE ward_id NOT IN (SELECT ward_id FROM wards)",
    ),
)


def run_checks(conn: psycopg.Connection[Any]) -> tuple[int, list[Outcome]]:
    """The last complete day, and every check's outcome up to it."""
    day = db.last_complete_day(conn)
    outcomes = []
    for check in CHECKS:
        query = f"SELECT count(*) OVER (), v.* FROM ({check.query}) v LIMIT {SAMPLE}"
        rows = conn.execute(query, {"day": day}).fetchall()  # type: ignore[arg-type]
        outcomes.append(Outcome(check, int(rows[0][0]) if rows else 0, [tuple(r[1:]) for r in rows]))
    return day, outcomes
