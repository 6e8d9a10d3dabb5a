"""Over a thousand bad messages of every kind, on every consumed topic, during a real run: each
one ends in ``dead_letters`` with its reason, the worker keeps going, and the run's data is
exactly what an undisturbed run stores."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import subprocess
import time

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from hospital_stream import sim
from hospital_stream.wire import batch
from tests.helpers import BIN, DAYS, HOSPITAL, cli, data_checksums, hospital_env, last_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def bad_messages(run_id: str, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """(topic suffix, value, expected reason fragment) for every kind of bad input."""
    config = sim.HospitalConfig(seed=int(HOSPITAL["HOSPITAL_SEED"]), beds=100, population=150_000)
    ward = config.wards[0].ward_id
    good = {
        "run_id": run_id,
        "day": 2,
        "admission_id": 2_099_999,
        "patient_id": 17,
        "event_type": "transfer",
        "from_ward_id": ward,
        "to_ward_id": config.wards[1].ward_id,
        "transferred_at": "2020-01-03T10:00:00+02:00",
    }
    plans: list[tuple[str, bytes, str]] = []

    def streamed(reason: str, **changes: object) -> None:
        obj = {**good, "transfer_id": 29_000_000 + len(plans), **changes}
        obj = {k: v for k, v in obj.items() if v is not None}  # None: leave the field out
        plans.append(("transfers.streamed", json.dumps(obj).encode(), reason))

    kinds = [
        lambda: plans.append(("transfers.streamed", b"{not json", "invalid JSON")),
        lambda: plans.append(("transfers.streamed", b"[1, 2, 3]", "JSON object")),
        lambda: plans.append(("transfers.streamed", b"", "empty message")),
        lambda: streamed("missing field 'admission_id'", admission_id=None),
        lambda: streamed("must be int", patient_id="17"),
        lambda: streamed("unknown event_type", event_type="'; DROP TABLE patients; --"),
        lambda: streamed("not a timestamp", transferred_at="<script>alert(1)</script>"),
        lambda: streamed("wrong wards", event_type="admit"),
        lambda: streamed("unknown ward", to_ward_id=9999),
        lambda: streamed("unknown patient", patient_id=10**9),
        lambda: streamed("not on simulated day", transferred_at="2023-07-01T10:00:00+02:00"),
        lambda: streamed("is negative", day=-3),
        lambda: streamed("database holds run", run_id="a-run-long-gone"),
        lambda: plans.append(("records.batch", b"no header line at all", "no header line")),
        lambda: plans.append(("records.batch", b"{}\nrows", "unsupported schema version")),
        lambda: plans.append(("records.batch", _chunk(run_id, table="users"), "unknown table")),
        lambda: plans.append(("records.batch", _chunk(run_id) + b"9\t9\n", "digest mismatch")),
        lambda: plans.append(("records.batch", _chunk(run_id, day=2**40), "too large")),
        lambda: plans.append(("census.daily", b'{"day": 1}', "missing field 'ward_id'")),
        lambda: plans.append(
            ("census.daily", json.dumps({"day": 1, "ward_id": 2**40, "occupied": 1}).encode(), "unknown ward")
        ),
        lambda: plans.append(("occupancy.changes", b"\xff\xfe", "invalid JSON")),
        lambda: plans.append(
            (
                "occupancy.changes",
                json.dumps({"ward_id": 9999, "day": 1, "source": "batch", "moves": []}).encode(),
                "unknown ward",
            )
        ),
        lambda: plans.append(
            (
                "occupancy.changes",
                json.dumps({"ward_id": ward, "day": 1, "source": "batch", "moves": [[1, 2, 5]]}).encode(),
                "moves must be",
            )
        ),
        lambda: plans.append(
            (
                "staff.changes",
                json.dumps({"staff_id": 1, "assignment_id": 1, "change": "promote"}).encode(),
                "unknown staff change",
            )
        ),
        lambda: plans.append(
            (
                "staff.changes",
                json.dumps({"staff_id": 1, "assignment_id": 1, "change": "end", "on": "soon"}).encode(),
                "not a date",
            )
        ),
    ]
    kinds = [k for k in kinds if k is not None]
    while len(plans) < 1000:
        rng.choice(kinds)()
    for _ in range(3):  # oversized
        plans.append(("transfers.streamed", b'{"x": "' + b"a" * 950_000 + b'"}', "exceeds"))
    for n in range(20):  # well formed and plausible, but no batch ever confirms them
        day = 2 + n % (DAYS - 4)
        date = config.date_of(day)
        streamed("is not in the batch of day", day=day, transferred_at=f"{date}T11:00:00+02:00")
    for n in range(10):  # a chunk whose two rows PostgreSQL rejects: two dead letters each
        rows = [("Z98.1", None, "comorbidity"), ("Z98.2", "x" * 10, None)]
        plans.append(
            (
                "records.batch",
                batch.encode_chunk(run_id, 999_000 + n, 0, "icd10_codes", rows),
                "icd10_codes:",
            )
        )
        plans.append(("", b"", "icd10_codes:"))  # the second row's dead letter
    return plans


def _chunk(run_id: str, table: str = "wards", day: int = 1) -> bytes:
    raw = batch.encode_chunk(run_id, 999_999, 0, "wards", [(1, "A", "Ward A", "medicine", 10, 0)])
    head, _, payload = raw.partition(b"\n")
    obj = json.loads(head)
    obj.update(table=table, day=day)
    return json.dumps(obj).encode() + b"\n" + payload


async def produce(bootstrap: str, prefix: str, plans: list[tuple[str, bytes, str]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=1, max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        for suffix, value, _ in plans:
            if suffix:
                await producer.send_and_wait(f"{prefix}.{suffix}", value, key=b"hostile")
    finally:
        await producer.stop()


def test_a_thousand_bad_messages_all_dead_lettered_and_the_run_unharmed(
    reference_run, embedded_stack, tmp_path, record_property
):
    env = hospital_env(embedded_stack, default_logins=True)
    url = env["HOSPITAL_DATABASE_URL"]
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [str(BIN / "hospital-stream"), "run", "--days", str(DAYS), "--speed", "600"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    run_id = None
    deadline = time.monotonic() + 120
    while run_id is None and time.monotonic() < deadline and run.poll() is None:
        try:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT run_id FROM simulation WHERE EXISTS (SELECT 1 FROM sim_days)"
                ).fetchone()
                run_id = row[0] if row else None
        except psycopg.Error:
            pass
        time.sleep(0.5)
    assert run_id, (tmp_path / "run.log").read_text()[-2000:]
    plans = bad_messages(run_id, random.Random(99))
    stored_before = last_day(url)
    asyncio.run(produce("{}:{}".format(*embedded_stack.kafka_address), env["HOSPITAL_TOPIC_PREFIX"], plans))
    assert run.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]

    expected = collections.Counter(reason for _, _, reason in plans)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            reasons = [r for (r,) in conn.execute("SELECT reason FROM dead_letters").fetchall()]
        if len(reasons) >= len(plans):
            break
        time.sleep(1)
    record_property(
        "fault",
        f"injected {sum(1 for s, _, _ in plans if s)} bad messages with days up to {stored_before}"
        f" stored; {len(reasons)} dead letters",
    )
    assert len(reasons) == len(plans)
    for fragment, count in expected.items():
        assert sum(fragment in reason for reason in reasons) >= count, fragment
    assert data_checksums(url) == data_checksums(reference_run["HOSPITAL_DATABASE_URL"])
    declared = collections.Counter(_kind(suffix, reason) for suffix, _, reason in plans)
    assert cli(env, "validate", "--skip-content").returncode == 1  # dead letters not declared
    args = [a for kind, n in sorted(declared.items()) for a in ("--expect-dead-letters", f"{kind}={n}")]
    result = cli(env, "validate", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def _kind(suffix: str, reason: str) -> str:
    """The dead_letters kind a planned bad message is stored under."""
    if reason == "icd10_codes:":
        return "bad_row"  # a row of a chunk PostgreSQL refused (the second row's has no topic)
    if reason == "is not in the batch of day":
        return "unconfirmed_stream"
    if suffix in ("occupancy.changes", "staff.changes"):
        return "agent_rejected"  # read by the tracking agents, which hand them to the sink
    return "invalid_message"
