"""The whole pipeline on the real embedded broker and PostgreSQL: a bounded run at max speed,
its invariants, a restart, the web views and bad input.

Every test gets its own database, topic prefix and consumer group on the session's stack.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from urllib.parse import urlsplit

import psycopg
import pytest

from hospital_stream import db, sim
from hospital_stream.settings import DEFAULT_ADMIN_USER, DEFAULT_READER_USER, Settings
from hospital_stream.tools import plan, validate
from hospital_stream.wire import batch
from hospital_stream.wire.batch import BATCH_KEY
from tests.helpers import BIN, DAYS, HOSPITAL, assert_valid, cli, data_checksums, hospital_env, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bounded_run_stores_every_day_and_exits_zero(reference_run):
    with psycopg.connect(reference_run["HOSPITAL_DATABASE_URL"]) as conn:
        assert db.last_complete_day(conn) == DAYS - 1
        assert conn.execute("SELECT count(*) FROM sim_days").fetchone()[0] == DAYS
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_stored_rows_equal_what_the_simulator_produced(reference_run):
    config = sim.HospitalConfig(seed=4242, beds=100, population=150_000)
    produced: dict[str, int] = {}
    for records in sim.iter_days(config, DAYS):
        for table, count in records.row_counts().items():
            produced[table] = produced.get(table, 0) + count
    sums = data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    for table in (
        "patients",
        "wards",
        "staff",
        "staff_assignments",
        "admissions",
        "transfers",
        "diagnoses",
        "bed_requests",
        "icd10_codes",
    ):
        assert sums[table][0] == produced[table], table
    assert sums["ward_census"][0] == DAYS * len(config.wards)


def test_validate_passes_and_status_reports(reference_run):
    result = cli(reference_run, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all {len(validate.ALL_CHECKS)} checks passed" in result.stdout
    status = cli(reference_run, "status")
    assert status.returncode == 0, status.stderr
    assert f"days stored      {DAYS}" in status.stdout
    assert "dead letters     0" in status.stdout
    assert "MB planned for" in status.stdout


def test_the_plan_predicts_the_rows_and_bytes_the_run_stored(reference_run):
    config = sim.HospitalConfig(seed=4242, beds=100, population=150_000)
    planned = plan.estimate(config, DAYS, sample_days=6)  # extrapolates half of the days
    url = reference_run["HOSPITAL_DATABASE_URL"]
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        rows = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("lab_results", "prescriptions", "vital_signs", "admissions")
        }
    print(f"planned {planned.bytes / 1e6:.1f} MB, stored {stored / 1e6:.1f} MB")
    assert abs(planned.bytes - stored) <= 0.15 * stored
    for table in rows:
        expected = next(t.rows for t in planned.tables if t.table == table)
        assert abs(expected - rows[table]) <= 0.15 * rows[table], table


def test_validate_fails_readably_when_an_invariant_breaks(reference_run, embedded_stack):
    env = hospital_env(embedded_stack)
    url = env["HOSPITAL_DATABASE_URL"]
    source = reference_run["HOSPITAL_DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}" TEMPLATE "{source}" OWNER hospital')
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE ward_census SET occupied = occupied + 1 WHERE sim_day = 3 AND ward_id = 2")
        conn.execute(
            "DELETE FROM diagnoses WHERE sim_day = 5 AND seq = 1 AND admission_id = "
            "(SELECT min(admission_id) FROM diagnoses WHERE sim_day = 5)"
        )
    result = cli(env, "validate")
    assert result.returncode == 1
    assert "FAIL occupancy table equals census" in result.stdout
    assert "FAIL rows per day" in result.stdout
    assert "ok   ward capacity" in result.stdout


def test_restart_continues_with_no_gap_and_no_duplicate(reference_run, embedded_stack):
    env = hospital_env(embedded_stack)
    first = cli(env, "run", "--days", "5", "--speed", "max")
    assert first.returncode == 0, first.stdout + first.stderr
    second = cli(env, "run", "--days", str(DAYS - 5), "--speed", "max")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "days 5..11" in second.stdout
    assert data_checksums(env["HOSPITAL_DATABASE_URL"]) == data_checksums(
        reference_run["HOSPITAL_DATABASE_URL"]
    )
    assert_valid(env)


def test_a_run_with_other_settings_is_refused_without_reset(reference_run):
    result = cli({**reference_run, "HOSPITAL_SEED": "1"}, "run", "--days", "1", "--speed", "max")
    assert result.returncode == 1
    assert "other settings" in result.stderr and "--reset" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_writes_one_csv_per_table(reference_run, tmp_path):
    result = cli(
        reference_run, "export", "--format", "csv", "--out", str(tmp_path), "--tables", "wards,admissions"
    )
    assert result.returncode == 0, result.stderr
    counts = data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    for table in ("wards", "admissions"):
        lines = (tmp_path / f"{table}.csv").read_text().splitlines()
        assert lines[0].startswith(f"{table[:-1]}_id" if table == "wards" else "admission_id")
        assert len(lines) - 1 == counts[table][0]
    bad = cli(reference_run, "export", "--out", str(tmp_path), "--tables", "nope")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "unknown table nope" in bad.stderr


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


#: a fake patient planted inside bad messages and a bad row: stored as dead letters, never logged
PLANTED = "Nomvula Plantedname-Zwane 8001015009087"


def test_worker_serves_views_from_its_tables_and_dead_letters_bad_input(embedded_stack, tmp_path):
    env = hospital_env(embedded_stack, default_logins=True, HOSPITAL_SPEED="max", HOSPITAL_RUN_UNTIL_DAY="6")
    assert cli(env, "db", "migrate").returncode == 0
    base = f"http://127.0.0.1:{env['HOSPITAL_WEB_PORT']}"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [str(BIN / "faust"), "-A", "hospital_stream.app", "worker", "-l", "info"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = env["HOSPITAL_DATABASE_URL"]
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                with psycopg.connect(url) as conn:
                    if db.last_complete_day(conn) >= 5:
                        break
            except psycopg.OperationalError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the worker did not store 6 days in time:\n" + log.read_text()[-3000:])

        occupancy = _get(f"{base}/occupancy/")
        with psycopg.connect(url) as conn:
            census = dict(
                conn.execute("SELECT ward_id, occupied FROM ward_census WHERE sim_day = 5").fetchall()
            )
            beds = dict(conn.execute("SELECT ward_id, beds FROM wards").fetchall())
            # built by the worker's least-privileged login after day 0's patients (migration 0012)
            national_ids = conn.execute(
                "SELECT i.indisunique AND i.indisvalid FROM pg_index i"
                " WHERE i.indexrelid = to_regclass('patients_national_id_key')"
            ).fetchall()
            assigned = conn.execute(
                "SELECT count(*) FROM staff_assignments a JOIN staff s USING (staff_id)"
                " WHERE a.ends_on IS NULL AND s.retired_on IS NULL"
            ).fetchone()[0]
        wards = {w["ward_id"]: w for w in occupancy["wards"]}
        assert national_ids == [(True,)]
        assert set(wards) == set(beds)
        for ward_id, ward in wards.items():
            assert ward["as_of_day"] == 5
            assert ward["beds"] == beds[ward_id]
            assert ward["occupied"] == census[ward_id] == len(ward["patients"]) <= ward["beds"]
        staff = _get(f"{base}/staff/")
        assert staff["staff_count"] == assigned > 0
        assert all(w["staff_count"] > 0 for w in staff["wards"])

        with psycopg.connect(url) as conn:
            run_id = conn.execute("SELECT run_id FROM simulation").fetchone()[0]
        plausible = {
            "run_id": run_id,
            "day": 3,
            "transfer_id": 39999999,
            "admission_id": 3099999,
            "patient_id": 17,
            "event_type": "transfer",
            "from_ward_id": 3,
            "to_ward_id": 4,
            "transferred_at": "2020-01-04T10:00:00+02:00",
        }
        bad = [
            f"not json: {PLANTED}".encode(),
            b'{"run_id": 1}',
            b"\xff" * 10,
            json.dumps({"event_type": "transfer"}).encode(),
            json.dumps({**plausible, "to_ward_id": 999, "patient_name": PLANTED}).encode(),
            json.dumps({**plausible, "patient_id": 10**9}).encode(),
            json.dumps({**plausible, "transferred_at": "2021-06-01T10:00:00+02:00"}).encode(),
            json.dumps({**plausible, "run_id": "an-older-run"}).encode(),
            json.dumps({**plausible, "event_type": PLANTED}).encode(),  # quoted by its reason
            # well formed, but day 3 is complete (6 days are) and never had it
            json.dumps({**plausible, "patient_name": PLANTED}).encode(),
        ]
        # keyed by their admission, as the generator keys them: each is refused for what it says
        produce(embedded_stack, f"{env['HOSPITAL_TOPIC_PREFIX']}.transfers.streamed", bad, key=b"3099999")
        # well formed, with the run's id and the batch key, but for a day the schedule never has
        outside = batch.encode_chunk(
            run_id,
            999_999,
            0,
            "icd10_codes",
            [("Z99.9", "Dependence on enabling machines", "comorbidity"), ("Z99.8", None, PLANTED)],
        )
        produce(
            embedded_stack,
            f"{env['HOSPITAL_TOPIC_PREFIX']}.records.batch",
            [json.dumps({"note": PLANTED}).encode() + b"\nrows", b"", outside],
            key=BATCH_KEY.encode(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                letters = conn.execute("SELECT topic, reason FROM dead_letters").fetchall()
            if len(letters) >= len(bad) + 3:
                break
            time.sleep(1)
        assert len(letters) == len(bad) + 3, letters
        reasons = " ".join(reason for _, reason in letters)
        for expected in (
            "invalid JSON",
            "empty message",
            "missing field",
            "unknown ward 999",
            "unknown patient",
            "is not on simulated day 3",
            "database holds run",
            "day 3 is complete and never had it",
        ):
            assert expected in reasons
        with psycopg.connect(url) as conn:
            assert (
                conn.execute("SELECT count(*) FROM transfers WHERE transfer_id = 39999999").fetchone()[0] == 0
            )
            codes = conn.execute("SELECT icd10_code FROM icd10_codes WHERE icd10_code LIKE 'Z99%'").fetchall()
            assert codes == []  # nothing of the chunk is stored, not even its good row
            ledger = conn.execute("SELECT count(*) FROM ingested_chunks WHERE sim_day = 999999").fetchone()
            chunk_letter = conn.execute(
                "SELECT row_number, kind, sim_day, reason FROM dead_letters"
                " WHERE topic LIKE '%.records.batch' AND position('Z99.9'::bytea IN payload) > 0"
            ).fetchall()
            planted = conn.execute(
                "SELECT count(*) FROM dead_letters WHERE position(%s::bytea IN payload) > 0",
                (PLANTED.encode(),),
            ).fetchone()[0]
        assert ledger == (0,)
        assert [letter[:3] for letter in chunk_letter] == [(0, "outside_schedule", 999_999)]
        assert "past the end of the schedule" in chunk_letter[0][3]
        # Four raw transfers (one for a complete day), a batch header and the refused chunk
        assert planted == 6
        assert PLANTED in reasons  # a reason may quote a value: it is stored, never logged

        listed = cli(env, "dlq", "list")
        assert listed.returncode == 0 and "unknown ward 999" in listed.stdout
        assert f"{len(bad) + 3:,} not replayed" in listed.stdout
        replayed = cli(env, "dlq", "replay", "--all")
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {len(bad) + 3} of {len(bad) + 3}" in replayed.stdout
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the replayed messages are dead-lettered again
            with psycopg.connect(url) as conn:
                fresh = conn.execute(
                    "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"
                ).fetchone()[0]
            if fresh >= len(bad) + 3:
                break
            time.sleep(1)
        assert fresh == len(bad) + 3
        assert _get(f"{base}/occupancy/")["totals"]["beds"] == sum(beds.values())  # still serving
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            pytest.fail("the worker did not stop on SIGTERM")
    text = log.read_text()
    assert "Traceback" not in text
    _assert_no_patient_data_in(text, url)


def _assert_no_patient_data_in(text: str, url: str) -> None:
    """The worker's log names ids, never a patient's name or ID number, nor a bad message's payload."""
    assert "sent day 5" in text and "dead letter from" in text  # an info log, with the dead letters
    assert PLANTED not in text and "Plantedname" not in text and PLANTED.split()[-1] not in text
    with psycopg.connect(url) as conn:
        patients = conn.execute("SELECT national_id, first_name || ' ' || last_name FROM patients").fetchall()
    assert len(patients) == int(HOSPITAL["HOSPITAL_POPULATION"])
    national_ids = {national_id for national_id, _ in patients}
    assert not set(re.findall(r"(?<!\d)\d{13}(?!\d)", text)) & national_ids
    # Every run of 2..n words in the log, n being the most words a full name has.
    names = {name for _, name in patients}
    words = re.findall(r"[^\W\d_]+(?:['-][^\W\d_]+)*", text)
    longest = max(len(name.split()) for name in names)
    runs = {" ".join(words[i : i + n]) for n in range(2, longest + 1) for i in range(len(words) - n + 1)}
    leaked = names & runs
    assert not leaked, sorted(leaked)[:5]


def test_least_privilege_roles(reference_run, embedded_stack, tmp_path):
    """With the default logins, the worker writes as a role that may only read and write rows,
    status, validate, export and dlq list read as one that may only read, and only migrations
    connect as the owner."""
    env = hospital_env(embedded_stack, default_logins=True)
    settings = Settings.from_env(env)
    name = urlsplit(settings.database_url).path.strip("/")
    logins = {
        settings.admin_url: DEFAULT_ADMIN_USER,
        settings.database_url: "hospital_worker",
        settings.reader_url: DEFAULT_READER_USER,
    }
    assert {urlsplit(url).path for url in logins} == {f"/{name}"}  # three logins, one database

    run = cli(env, "run", "--days", "3", "--speed", "max")  # migrates as the owner, creating the logins
    assert run.returncode == 0, run.stdout + run.stderr
    for command in (
        ["validate"],
        ["status"],
        ["export", "--out", str(tmp_path), "--tables", "wards"],
        ["dlq", "list"],
    ):
        result = cli(env, *command)
        assert result.returncode == 0, (command, result.stdout + result.stderr)
    assert len((tmp_path / "wards.csv").read_text().splitlines()) > 1  # a header and the wards

    for url, user in logins.items():
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, name)
    with psycopg.connect(settings.admin_url) as conn:
        for login, group in (("hospital_worker", db.WRITER_ROLE), (DEFAULT_READER_USER, db.READER_ROLE)):
            attributes = conn.execute(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
                " pg_has_role(rolname, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
                (group, login),
            ).fetchone()
            assert attributes == (True, False, False, False, False, True), login
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname IN ('hospital_worker', %s)",
            (DEFAULT_READER_USER,),
        ).fetchone()[0]
        assert owned == 0

    for statement in (
        "DROP TABLE patients",
        "ALTER TABLE patients ADD COLUMN note text",
        "TRUNCATE dead_letters",
        "CREATE TABLE intruder (x int)",
        "CREATE SCHEMA intruder",
        "CREATE INDEX intruder ON patients (last_name)",
    ):
        with (
            psycopg.connect(settings.database_url) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    with psycopg.connect(settings.reader_url) as conn:
        assert conn.execute("SELECT count(*) FROM admissions").fetchone()[0] > 0
    for statement in (
        'INSERT INTO dead_letters (topic, partition, "offset", reason, payload, payload_bytes)'
        " VALUES ('x', 0, 0, 'x', '', 0)",
        "UPDATE wards SET beds = beds + 1",
        "DELETE FROM admissions",
        "TRUNCATE dead_letters",
    ):
        with (
            psycopg.connect(settings.reader_url) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
