"""The stored data's invariants, each one SQL query that returns its violations.

Only completely stored days are judged: a day still arriving is not yet a violation. Each check
judges a window of simulated days at a time (``%(first)s..%(last)s``, WINDOW_DAYS long), so that
every query reads a bounded range of each table through its sim_day index, however long the
history. The census check compares each day's stored count with the day before's plus the day's
moves (so, from day 0 on, with the replay of every move); the ward capacity check starts a window
from the stored census of the day before it, which the census check judged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psycopg

from hospital_stream import db
from hospital_stream.model import calendar
from hospital_stream.tools import content

SAMPLE = 5
TZ = calendar.TIME_ZONE_NAME
#: days a check judges per query: 30 simulated days (about 1.1 M clinical records). Most of a
#: query's time is fixed (the admissions' hash, the plan), so on the full 5 GB run a 7-day
#: window took 64.6 s for days 120..239 and a 30-day one 19.1 s, its slowest query 1.42 s and
#: 1.79 s: a month per query keeps each query near a second and the whole run 3.4x shorter.
WINDOW_DAYS = 30


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    description: str
    #: a query returning one row per violation among the days %(first)s..%(last)s (the window);
    #: %(day)s is the last complete day, for what a window's rows refer to outside it
    #: (empty: the check is no windowed query, see DEAD_LETTERS and CONTENT)
    query: str = ""


@dataclasses.dataclass
class Outcome:
    check: Check
    violations: int = 0
    sample: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    #: the sample's column names (none: content's sample, a difference then its rows)
    columns: tuple[str, ...] = ()
    #: the time its queries took, all windows together, and the slowest window's
    seconds: float = 0.0
    slowest_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.violations == 0


#: each batch table's stored rows per day, as content equals simulator digests them
_ROW_COUNTS = "\n UNION ALL ".join(
    f"SELECT '{name}', sim_day, count(*) FROM ({source.rows_sql(text=False)}) x GROUP BY sim_day"
    for name, source in content.SOURCES.items()
)

CHECKS = (
    Check(
        "transfer references",
        "every transfer names a stored admission of the same patient and stored wards",
        """SELECT t.transfer_id, t.admission_id, t.patient_id, a.patient_id AS admission_patient
           FROM transfers t LEFT JOIN admissions a USING (admission_id)
           WHERE t.sim_day BETWEEN %(first)s AND %(last)s AND (
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
               WHERE to_ward_id IS NOT NULL AND sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT transfer_id, from_ward_id, -1 FROM transfers
               WHERE from_ward_id IS NOT NULL AND sim_day BETWEEN %(first)s AND %(last)s),
           running AS (
               SELECT ward_id, transfer_id,
                      sum(delta) OVER (PARTITION BY ward_id ORDER BY transfer_id, delta) AS occupied
               FROM moves)
           SELECT r.ward_id, r.transfer_id, coalesce(c.occupied, 0) + r.occupied AS occupied, w.beds
           FROM running r JOIN wards w USING (ward_id)
           LEFT JOIN ward_census c ON c.sim_day = %(first)s - 1 AND c.ward_id = r.ward_id
           WHERE coalesce(c.occupied, 0) + r.occupied NOT BETWEEN 0 AND w.beds""",
    ),
    Check(
        "cancellations",
        "every A11/A12/A13 cancellation reverses its admission's event just before it, and an "
        "admission is marked cancelled exactly when its admit was cancelled",
        # a cancellation of the week against its admission's event before it, whatever its day
        """WITH ordered AS (
               SELECT t.*, lag(event_type) OVER w AS before_type, lag(from_ward_id) OVER w AS before_from,
                      lag(to_ward_id) OVER w AS before_to
               FROM transfers t
               WHERE t.sim_day <= %(day)s AND t.admission_id IN (
                   SELECT admission_id FROM transfers
                   WHERE sim_day BETWEEN %(first)s AND %(last)s AND starts_with(event_type, 'cancel_'))
               WINDOW w AS (PARTITION BY admission_id ORDER BY transferred_at, transfer_id))
           SELECT 'transfer' AS kind, admission_id, transfer_id, event_type FROM ordered
           WHERE starts_with(event_type, 'cancel_') AND sim_day BETWEEN %(first)s AND %(last)s AND (
                 before_type IS DISTINCT FROM substr(event_type, 8)
              OR before_from IS DISTINCT FROM to_ward_id OR before_to IS DISTINCT FROM from_ward_id)
           UNION ALL
           SELECT 'admission', a.admission_id, c.transfer_id, 'cancelled_at' FROM admissions a
           LEFT JOIN transfers c
               ON c.admission_id = a.admission_id AND c.event_type = 'cancel_admit' AND c.sim_day <= %(day)s
           WHERE a.sim_day BETWEEN %(first)s AND %(last)s AND a.cancelled_at IS DISTINCT FROM c.transferred_at
           UNION ALL
           SELECT 'admission', c.admission_id, c.transfer_id, 'cancelled_at' FROM transfers c
           WHERE c.event_type = 'cancel_admit' AND c.sim_day BETWEEN %(first)s AND %(last)s
             AND NOT EXISTS (SELECT 1 FROM admissions a WHERE a.admission_id = c.admission_id)""",
    ),
    Check(
        "retirement age",
        "no staff member is assigned on or after their 65th birthday",
        """SELECT a.assignment_id, a.staff_id, s.birth_date, a.starts_on, a.ends_on
           FROM staff_assignments a JOIN staff s USING (staff_id)
           WHERE a.sim_day BETWEEN %(first)s AND %(last)s
             AND coalesce(a.ends_on, (SELECT sim_date FROM sim_days WHERE sim_day = %(last)s))
                 >= CASE WHEN to_char(s.birth_date, 'MM-DD') = '02-29'  -- 65 years on: never a leap year
                         THEN make_date(extract(year FROM s.birth_date)::int + 65, 3, 1)
                         ELSE (s.birth_date + interval '65 years')::date END""",
    ),
    Check(
        "retirements replaced",
        "every retirement is followed the same day by a hire of the same role and specialty",
        """SELECT r.staff_id, r.role, r.specialty, r.retired_on FROM staff r
           WHERE r.retired_on <= (SELECT sim_date FROM sim_days WHERE sim_day = %(last)s)
             AND (%(first)s = 0 OR r.retired_on >= (SELECT sim_date FROM sim_days WHERE sim_day = %(first)s))
             AND NOT EXISTS (
               SELECT 1 FROM staff h WHERE h.role = r.role AND h.specialty = r.specialty
                  AND h.hired_on = r.retired_on AND h.staff_id <> r.staff_id)""",
    ),
    Check(
        "stream matches batch",
        "every streamed transfer of a complete day is in that day's batch with identical fields",
        """SELECT transfer_id, sim_day, seen_in_batch, stream_matches_batch FROM transfers
           WHERE seen_in_stream AND sim_day BETWEEN %(first)s AND %(last)s
             AND (NOT seen_in_batch OR stream_matches_batch IS NOT TRUE)""",
    ),
    Check(
        "occupancy table equals census",
        "the Faust occupancy table's end-of-day count equals the census computed from transfers",
        """WITH grid AS (
               SELECT d.sim_day, w.ward_id FROM sim_days d CROSS JOIN wards w
               WHERE d.sim_day BETWEEN %(first)s AND %(last)s),
           daily AS (
               SELECT sim_day, ward_id, sum(delta) AS delta FROM (
                   SELECT sim_day, to_ward_id AS ward_id, 1 AS delta FROM transfers
                   WHERE to_ward_id IS NOT NULL AND sim_day BETWEEN %(first)s AND %(last)s
                   UNION ALL
                   SELECT sim_day, from_ward_id, -1 FROM transfers
                   WHERE from_ward_id IS NOT NULL AND sim_day BETWEEN %(first)s AND %(last)s) m
               GROUP BY sim_day, ward_id),
           census AS (  -- the day before's stored count and the day's moves
               SELECT g.sim_day, g.ward_id, coalesce(p.occupied, 0) + coalesce(x.delta, 0) AS occupied
               FROM grid g LEFT JOIN daily x USING (sim_day, ward_id)
               LEFT JOIN ward_census p ON p.sim_day = g.sim_day - 1 AND p.ward_id = g.ward_id)
           SELECT c.sim_day, c.ward_id, c.occupied AS computed, f.occupied AS faust_table
           FROM census c LEFT JOIN ward_census f USING (sim_day, ward_id)
           WHERE f.occupied IS DISTINCT FROM c.occupied""",
    ),
    Check(
        "rows per day",
        "every complete day stored exactly the rows the simulator produced for it",
        """WITH expected AS (
               SELECT d.sim_day, d.sim_date, e.key AS table_name, e.value::int AS rows
               FROM sim_days d, jsonb_each_text(d.row_counts) e
               WHERE d.sim_day BETWEEN %(first)s AND %(last)s),
           actual (t, sim_day, n) AS ("""
        + _ROW_COUNTS
        + """)
           SELECT e.sim_day, e.table_name, e.rows AS expected, coalesce(a.n, 0) AS stored
           FROM expected e LEFT JOIN actual a ON a.t = e.table_name AND a.sim_day = e.sim_day
           WHERE coalesce(a.n, 0) <> e.rows""",
    ),
    Check(
        "no duplicates",
        "no admission, transfer event or diagnosis is stored twice under different keys",
        """SELECT 'admission' AS kind, patient_id::text, admitted_at::text, count(*) FROM admissions
               WHERE sim_day BETWEEN %(first)s AND %(last)s
               GROUP BY patient_id, admitted_at HAVING count(*) > 1
           UNION ALL
           SELECT 'transfer', admission_id::text, transferred_at::text || ' ' || event_type, count(*)
               FROM transfers
               WHERE sim_day BETWEEN %(first)s AND %(last)s
               GROUP BY admission_id, event_type, transferred_at, from_ward_id, to_ward_id
               HAVING count(*) > 1
           UNION ALL
           SELECT 'diagnosis', admission_id::text, icd10_code, count(*) FROM diagnoses
               WHERE sim_day BETWEEN %(first)s AND %(last)s
               GROUP BY admission_id, icd10_code HAVING count(*) > 1""",
    ),
    Check(
        "national ids unique",
        "no two patients share a national id (the unique index built after day 0's patients refuses "
        "them; this finds them where it could not be built)",
        # with the index in place the gate is false and nothing is read
        """SELECT p.patient_id, p.national_id, p.sim_day FROM patients p
           WHERE NOT EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indexrelid = to_regclass('patients_national_id_key')
                               AND i.indisunique AND i.indisvalid)
             AND p.sim_day BETWEEN %(first)s AND %(last)s
             AND EXISTS (SELECT 1 FROM patients q
                         WHERE q.national_id = p.national_id AND q.patient_id < p.patient_id
                           AND q.sim_day <= %(day)s)""",
    ),
    Check(
        "deaths and discharges",
        "a death has a time no later than discharge; no discharge precedes its admission",
        """SELECT admission_id, admitted_at, discharged_at, died_at, discharge_location FROM admissions
           WHERE sim_day BETWEEN %(first)s AND %(last)s
             AND ((discharge_location = 'DIED') <> (died_at IS NOT NULL)
              OR died_at > discharged_at OR discharged_at <= admitted_at)""",
    ),
    Check(
        "clinical references",
        "every lab result, vital sign, prescription and procedure names a stored admission of the "
        "same patient and a known test, ward, medicine or procedure code",
        # the week's records of the four tables first, then one join to the admissions: their hash
        # is built once per query, not once per table
        """WITH x AS (
               SELECT 'lab_results' AS kind, lab_result_id AS id, admission_id, patient_id,
                      EXISTS (SELECT 1 FROM lab_tests t WHERE t.test_code = r.test_code) AS known
               FROM lab_results r WHERE sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT 'vital_signs', vital_sign_id, admission_id, patient_id,
                      EXISTS (SELECT 1 FROM wards w WHERE w.ward_id = r.ward_id)
               FROM vital_signs r WHERE sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT 'prescriptions', prescription_id, admission_id, patient_id,
                      EXISTS (SELECT 1 FROM medicines m WHERE m.medicine_code = r.medicine_code)
               FROM prescriptions r WHERE sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT 'procedures', seq, admission_id, NULL,  -- a procedure names no patient
                      EXISTS (SELECT 1 FROM procedure_codes c WHERE c.procedure_code = r.procedure_code)
               FROM procedures r WHERE sim_day BETWEEN %(first)s AND %(last)s)
           SELECT x.kind, x.id, x.admission_id FROM x LEFT JOIN admissions a USING (admission_id)
           WHERE a.admission_id IS NULL OR NOT x.known
              OR a.patient_id <> coalesce(x.patient_id, a.patient_id)""",
    ),
    Check(
        "diagnosis references",
        "every diagnosis names a stored admission and a known ICD-10 code",
        """SELECT d.admission_id, d.seq, d.icd10_code FROM diagnoses d
           WHERE d.sim_day BETWEEN %(first)s AND %(last)s
             AND (NOT EXISTS (SELECT 1 FROM admissions a WHERE a.admission_id = d.admission_id)
              OR NOT EXISTS (SELECT 1 FROM icd10_codes c WHERE c.icd10_code = d.icd10_code))""",
    ),
    Check(
        "clinical times inside stays",
        "lab results and vital signs are charted, and prescriptions start, between admission and discharge",
        """WITH x AS (
               SELECT 'lab_results' AS kind, lab_result_id AS id, charted_at AS at, admission_id
               FROM lab_results WHERE sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT 'vital_signs', vital_sign_id, charted_at, admission_id
               FROM vital_signs WHERE sim_day BETWEEN %(first)s AND %(last)s
               UNION ALL
               SELECT 'prescriptions', prescription_id, starts_at, admission_id
               FROM prescriptions WHERE sim_day BETWEEN %(first)s AND %(last)s)
           SELECT x.kind, x.id, x.at FROM x JOIN admissions a USING (admission_id)
           WHERE x.at < a.admitted_at OR x.at > coalesce(a.discharged_at, 'infinity')""",
    ),
    Check(
        "census wards known",
        "every census row names a stored ward",
        "SELECT sim_day, ward_id FROM ward_census"
        " WHERE sim_day BETWEEN %(first)s AND %(last)s AND ward_id NOT IN (SELECT ward_id FROM wards)",
    ),
)


#: judged once, not per window: the dead letters not replayed, per kind, against the counts
#: declared (%(kinds)s, %(counts)s); one row per kind whose count differs, with an example
DEAD_LETTERS = Check(
    "dead letters explained",
    "the dead letters not replayed are exactly those declared with --expect-dead-letters KIND=N",
    """WITH declared AS (SELECT * FROM unnest(%(kinds)s::text[], %(counts)s::int[]) AS e (kind, n)),
       stored AS (
           SELECT kind, count(*) AS n, min(dead_letter_id) AS example FROM dead_letters
           WHERE replayed_at IS NULL GROUP BY kind)
       SELECT coalesce(s.kind, e.kind) AS kind, coalesce(e.n, 0) AS declared, coalesce(s.n, 0) AS stored,
              l.dead_letter_id,
              l.sim_day, l.topic, left(l.reason, 120) AS reason
       FROM stored s FULL JOIN declared e ON e.kind = s.kind
       LEFT JOIN dead_letters l ON l.dead_letter_id = s.example
       WHERE coalesce(e.n, 0) <> coalesce(s.n, 0)
       ORDER BY 1""",
)
#: every day's stored rows against the simulator's (tools/content.py), a window at a time
CONTENT = Check(
    "content equals simulator",
    "every stored row of every table and every day's checkpoint equal what the simulator, run "
    "again with the run's config, makes for that day (an md5 per day and table)",
)
#: every check validate runs, in the order it reports them
ALL_CHECKS = (*CHECKS, DEAD_LETTERS, CONTENT)


def windows(first: int, last: int, days: int = WINDOW_DAYS) -> Iterator[tuple[int, int]]:
    """``first..last`` as consecutive ranges of at most ``days`` days."""
    for start in range(first, last + 1, days):
        yield start, min(start + days - 1, last)


def run_checks(
    conn: psycopg.Connection[Any],
    first: int = 0,
    last: int | None = None,
    progress: Callable[[int, int, float], None] = lambda first, last, seconds: None,
    *,
    check_content: bool = True,
    dead_letters: Mapping[str, int] | None = None,
) -> tuple[int, list[Outcome]]:
    """The last day judged (``last``, at most the last complete day), and every check's outcome
    over the days ``first..last``, judged a window at a time; ``progress`` hears of each window.

    ``dead_letters`` declares how many dead letters of each kind the store holds; without
    ``check_content`` the stored rows are not compared with the simulator's (the slow check),
    and CONTENT has no outcome.
    """
    # a window's query is short: compiling it (JIT) would cost more than it saves, often seconds
    conn.execute("SET jit = off")
    conn.execute("SET work_mem = '64MB'")  # the admissions' hash in one batch
    complete = db.last_complete_day(conn)
    last = complete if last is None else min(last, complete)
    outcomes = [Outcome(check) for check in CHECKS]
    comparison = content.Comparison(conn, first, last) if check_content and first <= last else None
    compared = Outcome(CONTENT)
    for lo, hi in windows(first, last):
        started = time.perf_counter()
        for outcome in outcomes:
            _judge(conn, outcome, {"first": lo, "last": hi, "day": complete, "tz": TZ})
        if comparison is not None:
            t0 = time.perf_counter()
            comparison.window(lo, hi)
            _timed(compared, time.perf_counter() - t0)
        progress(lo, hi, time.perf_counter() - started)
    declared = dict(dead_letters or {})
    outcomes.append(Outcome(DEAD_LETTERS))
    _judge(conn, outcomes[-1], {"kinds": list(declared), "counts": list(declared.values())})
    if check_content:
        outcomes.append(compared)
    if comparison is not None and comparison.first is not None:
        found = comparison.first
        compared.violations = comparison.differences
        compared.sample = [
            (
                f"day {found.day}",
                found.table,
                f"stored {_digest(found.stored)}",
                f"simulator {_digest(found.simulated)}",
            ),
            *found.rows,
        ][:SAMPLE]
    return last, outcomes


def _judge(conn: psycopg.Connection[Any], outcome: Outcome, params: dict[str, Any]) -> None:
    """Run ``outcome``'s query once, adding its violations and up to SAMPLE examples."""
    # MATERIALIZED: the check is planned for all its rows, never as a fast start for the LIMIT
    query = f"WITH v AS MATERIALIZED ({outcome.check.query}) SELECT count(*) OVER (), * FROM v LIMIT {SAMPLE}"
    t0 = time.perf_counter()
    cur = conn.execute(query, params)  # type: ignore[arg-type]
    rows = cur.fetchall()
    _timed(outcome, time.perf_counter() - t0)
    outcome.columns = tuple(column.name for column in (cur.description or ())[1:])
    if rows:
        outcome.violations += int(rows[0][0])
        outcome.sample.extend(tuple(r[1:]) for r in rows[: SAMPLE - len(outcome.sample)])


def _timed(outcome: Outcome, seconds: float) -> None:
    outcome.seconds += seconds
    outcome.slowest_seconds = max(outcome.slowest_seconds, seconds)


def _digest(digest: content.Digest) -> str:
    rows, md5 = digest
    return f"{rows} rows, md5 {md5 or '-'}"
