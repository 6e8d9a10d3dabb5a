"""Every validate check proven: a copy of the reference run with one violation planted fails
that check, and only it (with "content equals simulator" besides, when the plant changed stored
rows the simulator made), with a readable example; the clean copy passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from hospital_stream import db
from hospital_stream.settings import DEFAULT_READER_USER, Settings
from hospital_stream.tools import validate
from tests.helpers import DAYS, cli, content_digests, hospital_env

CONTENT = validate.CONTENT.name
LAST = DAYS - 1

#: each check's violation, planted by SQL in a copy of the reference run (as its owner)
PLANTS: dict[str, str] = {
    "transfer references": """
        UPDATE transfers SET patient_id = patient_id + 1
        WHERE transfer_id = (SELECT min(transfer_id) FROM transfers WHERE sim_day = 4)""",
    "ward capacity": """
        UPDATE wards SET beds = 1
        WHERE ward_id = (SELECT ward_id FROM ward_census ORDER BY occupied DESC, ward_id LIMIT 1)""",
    "cancellations": """
        UPDATE admissions SET cancelled_at = admitted_at + interval '1 minute'
        WHERE admission_id = (SELECT min(admission_id) FROM admissions
                              WHERE discharged_at IS NULL AND cancelled_at IS NULL AND sim_day = 6)""",
    "retirement age": """
        UPDATE staff SET birth_date = birth_date - interval '60 years'
        WHERE staff_id = (SELECT min(staff_id) FROM staff_assignments)""",
    # a retirement before the run (so no day's manifest counts it) that nobody replaced
    "retirements replaced": """
        UPDATE staff SET retired_on = hired_on
        WHERE staff_id = (SELECT min(s.staff_id) FROM staff s
                          WHERE s.hired_on < (SELECT sim_date FROM sim_days WHERE sim_day = 0)
                            AND NOT EXISTS (SELECT 1 FROM staff h
                                WHERE h.role = s.role AND h.specialty = s.specialty
                                  AND h.hired_on = s.hired_on AND h.staff_id <> s.staff_id))""",
    "stream matches batch": """
        UPDATE transfers SET stream_matches_batch = false
        WHERE transfer_id = (SELECT min(transfer_id) FROM transfers WHERE seen_in_stream)""",
    "occupancy table equals census": f"""
        UPDATE ward_census SET occupied = occupied + 1
        WHERE sim_day = {LAST} AND ward_id = (SELECT min(ward_id) FROM wards)""",
    "rows per day": """
        UPDATE sim_days SET row_counts = jsonb_set(row_counts, '{lab_results}',
                                                   to_jsonb((row_counts->>'lab_results')::int + 1))
        WHERE sim_day = 5""",
    "no duplicates": """
        UPDATE diagnoses d SET icd10_code = first.icd10_code
        FROM diagnoses first
        WHERE first.admission_id = d.admission_id AND first.seq = 1 AND d.seq = 2
          AND d.admission_id = (SELECT min(admission_id) FROM diagnoses WHERE seq = 2)""",
    # as if the unique index could not be built after day 0 (the stored ids repeated one)
    "national ids unique": """
        DROP INDEX patients_national_id_key;
        UPDATE patients SET national_id = (SELECT national_id FROM patients WHERE patient_id = 1)
        WHERE patient_id = 2""",
    # the table's own CHECK would refuse it: the check is there for a store without it
    "deaths and discharges": """
        ALTER TABLE admissions DROP CONSTRAINT admissions_check1;
        UPDATE admissions SET died_at = discharged_at + interval '1 hour'
        WHERE admission_id = (SELECT min(admission_id) FROM admissions WHERE died_at IS NOT NULL)""",
    "clinical references": """
        UPDATE prescriptions SET medicine_code = 'Z99ZZ99'
        WHERE prescription_id = (SELECT min(prescription_id) FROM prescriptions WHERE sim_day = 3)""",
    "diagnosis references": """
        UPDATE diagnoses SET icd10_code = 'Z99.9'
        WHERE (admission_id, seq) = (SELECT admission_id, seq FROM diagnoses WHERE sim_day = 2
                                     ORDER BY admission_id, seq LIMIT 1)""",
    "clinical times inside stays": """
        UPDATE vital_signs v SET charted_at = a.admitted_at - interval '1 hour'
        FROM admissions a
        WHERE a.admission_id = v.admission_id
          AND v.vital_sign_id = (SELECT min(vital_sign_id) FROM vital_signs WHERE sim_day = 7)""",
    "census wards known": f"INSERT INTO ward_census (sim_day, ward_id, occupied) VALUES ({LAST}, 9999, 0)",
    "dead letters explained": """
        INSERT INTO dead_letters (topic, partition, "offset", reason, payload, payload_bytes, kind, sim_day)
        VALUES ('planted.records.batch', 0, 7, 'planted: a row PostgreSQL refused', '', 0, 'bad_row', 3)""",
    # one lab value off by one: every invariant still holds, only the content is not the simulator's
    "content equals simulator": """
        UPDATE lab_results SET value = value + 1
        WHERE lab_result_id = (SELECT min(lab_result_id) FROM lab_results WHERE sim_day = 8)""",
}


@pytest.fixture
def copy_of_reference(reference_run, embedded_stack) -> Iterator[Callable[[str], dict[str, str]]]:
    """A factory: a copy of the reference run's database with ``plant`` run in it, as an env."""
    source = reference_run["HOSPITAL_DATABASE_URL"].rsplit("/", 1)[1]
    made: list[str] = []

    def make(plant: str) -> dict[str, str]:
        env = hospital_env(embedded_stack)
        name = env["HOSPITAL_DATABASE_URL"].rsplit("/", 1)[1]
        with psycopg.connect(embedded_stack.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER hospital").format(
                    sql.Identifier(name), sql.Identifier(source)
                )
            )
        made.append(name)
        if plant:
            with psycopg.connect(env["HOSPITAL_ADMIN_DATABASE_URL"]) as conn:
                for statement in plant.split(";"):
                    planted = conn.execute(statement).rowcount
                assert planted == 1, plant  # the last statement plants exactly one row
        return env

    yield make
    with psycopg.connect(embedded_stack.database_url, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def failed_checks(stdout: str) -> dict[str, list[str]]:
    """Each failed check's example lines, from validate's report."""
    failed: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("FAIL "):
            current = failed.setdefault(line[5:].split(":", 1)[0], [])
        elif line.startswith("ok   "):
            current = None
        elif line.strip().startswith("e.g. ") and current is not None:
            current.append(line.strip()[5:])
    return failed


def test_every_check_has_a_plant():
    assert set(PLANTS) == {check.name for check in validate.ALL_CHECKS}


def test_the_clean_copy_passes(copy_of_reference):
    env = copy_of_reference("")
    result = cli(env, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all {len(validate.ALL_CHECKS)} checks passed" in result.stdout


@pytest.mark.parametrize("check", list(PLANTS))
def test_a_planted_violation_fails_its_check_and_only_it(check, copy_of_reference, reference_run):
    env = copy_of_reference(PLANTS[check])
    changed = content_digests(env["HOSPITAL_DATABASE_URL"]) != content_digests(
        reference_run["HOSPITAL_DATABASE_URL"]
    )
    result = cli(env, "validate")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = failed_checks(result.stdout)
    assert set(failed) == {check} | ({CONTENT} if changed else set()), result.stdout
    assert failed[check], f"no example of {check}:\n{result.stdout}"
    assert "datetime.datetime" not in result.stdout  # values as PostgreSQL would show them
    assert len(failed[check]) <= validate.SAMPLE
    print(f"{check}: {failed[check][0]}")


def test_content_names_the_first_differing_day_and_table_with_its_rows(copy_of_reference):
    env = copy_of_reference(PLANTS["content equals simulator"])
    result = cli(env, "validate", "--digests")
    assert result.returncode == 1
    examples = failed_checks(result.stdout)[CONTENT]
    assert examples[0].startswith("day 8 | lab_results | stored "), examples
    # the changed row as stored and as the simulator made it, and nothing else
    sides = sorted(e.split(" | ", 1)[0] for e in examples[1:])
    assert sides == ["simulator only", "stored only"], examples
    assert "-- 1 violations" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("digest day 8 ")]) >= 5


def test_a_wrong_checkpoint_fails_content(copy_of_reference):
    env = copy_of_reference("UPDATE sim_days SET checkpoint = checkpoint || '\\x00'::bytea WHERE sim_day = 9")
    result = cli(env, "validate")
    assert result.returncode == 1
    assert set(failed_checks(result.stdout)) == {CONTENT}
    assert "e.g. day 9 | checkpoint | stored 1 rows" in result.stdout


def test_declared_dead_letters_pass_only_in_their_exact_number(copy_of_reference):
    env = copy_of_reference(PLANTS["dead letters explained"])
    assert cli(env, "validate", "--skip-content", "--expect-dead-letters", "bad_row=1").returncode == 0
    for declared in (["bad_row=2"], ["bad_row=1", "invalid_message=1"]):
        args = [a for d in declared for a in ("--expect-dead-letters", d)]
        result = cli(env, "validate", "--skip-content", *args)
        assert result.returncode == 1, declared
        assert set(failed_checks(result.stdout)) == {validate.DEAD_LETTERS.name}, result.stdout
    replayed = "UPDATE dead_letters SET replayed_at = now()"
    with psycopg.connect(env["HOSPITAL_ADMIN_DATABASE_URL"]) as conn:
        conn.execute(replayed)
    assert cli(env, "validate", "--skip-content").returncode == 0  # a replayed letter is explained


def test_skip_content_runs_every_other_check(copy_of_reference):
    env = copy_of_reference(PLANTS["content equals simulator"])
    result = cli(env, "validate", "--skip-content")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all {len(validate.ALL_CHECKS) - 1} checks passed (1 skipped: --skip-content)" in result.stdout
    assert CONTENT not in result.stdout


def test_validate_from_a_later_day_simulates_from_its_checkpoint(copy_of_reference):
    env = copy_of_reference(PLANTS["content equals simulator"])
    assert cli(env, "validate", "--from", "9").returncode == 0  # day 8 is not judged
    result = cli(env, "validate", "--from", "6", "--to", "8")
    assert result.returncode == 1
    assert set(failed_checks(result.stdout)) == {CONTENT}


def test_migration_0011_lets_the_reader_stage_rows_where_public_may_not(database_url, embedded_stack):
    db.migrate(database_url)
    host, port = embedded_stack.database_address
    name = database_url.rsplit("/", 1)[1]
    reader_url = f"postgresql://{DEFAULT_READER_USER}@{host}:{port}/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        db.ensure_logins(conn, Settings().database_url, reader_url)
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    with psycopg.connect(reader_url) as conn:
        conn.execute("CREATE TEMP TABLE staged (n int)")
        assert conn.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]
