"""What the tests share: the integration runs' environment, the CLI runner, checksums,
``wait_until``, the synthetic cohort of the clinical tests, and the property tests' strategies
of COPY text. No test imports another test
module or ``benchmarks/``; they import this."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pytest
from hypothesis import strategies as st

from hospital_stream import db, schema, sim
from hospital_stream.devstack.isolated import free_port
from hospital_stream.model import clinical
from hospital_stream.settings import DEFAULT_ADMIN_USER, DEFAULT_READER_USER, Settings
from hospital_stream.tools import content

T = TypeVar("T")


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    *,
    every: float = 0.5,
    ignore: tuple[type[BaseException], ...] = (),
    give_up: Callable[[], bool] = lambda: False,
    context: Callable[[], str] = lambda: "",
) -> T:
    """``check()``'s first truthy result, polled every ``every`` seconds (``ignore``d errors count
    as not yet); the test fails naming ``what``, with ``context()`` (a log tail, say), once
    ``timeout`` passes or ``give_up()`` says waiting is pointless."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() > deadline or give_up():
            pytest.fail(f"no {what} within {timeout:.0f} s\n{context()}")
        time.sleep(every)


# --- integration runs on the session's embedded stack --------------------------------------------

BIN = Path(sys.executable).parent
DAYS = 12
HOSPITAL = {"HOSPITAL_BEDS": "100", "HOSPITAL_POPULATION": "150000", "HOSPITAL_SEED": "4242"}


def hospital_env(stack: Settings, *, default_logins: bool = False, **overrides: str) -> dict[str, str]:
    """Environment for a run of its own (database, topics, consumer group) on the shared stack.

    All three database URLs name the test's own database. The worker's URL is the owner's, so a
    test may also use it to set up or break data; with ``default_logins`` it is the default
    least-privileged worker login instead, and the owner's and the reader's URLs are left unset,
    so they take their defaults: the logins of production (Settings.database_url's default user,
    a member of hospital_writer; ``run`` hands its worker no owner URL). Every fault test runs
    this way, so that it proves recovery with the rights the worker really has.
    """
    name = "t" + uuid.uuid4().hex[:10]
    host, port = stack.database_address
    worker = urlsplit(Settings().database_url).username if default_logins else DEFAULT_ADMIN_USER
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
    env.update(stack.to_env())
    env.update(HOSPITAL)
    env.update(
        {
            "HOSPITAL_DATABASE_URL": f"postgresql://{worker}@{host}:{port}/{name}",
            "HOSPITAL_ADMIN_DATABASE_URL": f"postgresql://{DEFAULT_ADMIN_USER}@{host}:{port}/{name}",
            "HOSPITAL_READER_DATABASE_URL": f"postgresql://{DEFAULT_READER_USER}@{host}:{port}/{name}",
            "HOSPITAL_APP_ID": name,
            "HOSPITAL_TOPIC_PREFIX": name,
            "HOSPITAL_WEB_PORT": str(free_port()),
            "HOSPITAL_RUN_UNTIL_DAY": "",
        }
    )
    if default_logins:
        del env["HOSPITAL_ADMIN_DATABASE_URL"], env["HOSPITAL_READER_DATABASE_URL"]
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hospital-stream"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def data_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every data table's rows in key order."""
    sums = {}
    with psycopg.connect(url) as conn:
        for table in schema.DATA_TABLES:
            row = conn.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                f" FROM {table} t"
            ).fetchone()
            sums[table] = (row[0], row[1])
    return sums


def content_digests(url: str) -> dict[tuple[int, str], tuple[int, str]]:
    """(rows, md5) per (day, table) of every complete day's stored rows, as validate's "content
    equals simulator" digests them: equal to a clean run's when a fault stored the same content."""
    with psycopg.connect(url) as conn:
        return content.stored_digests(conn, 0, db.last_complete_day(conn))


def assert_same_records(url: str, reference_url: str) -> None:
    """The run at ``url`` stored what the clean run at ``reference_url`` stored: the same
    per-table checksums and the same per-(day, table) content digests."""
    assert data_checksums(url) == data_checksums(reference_url), "per-table checksums differ"
    assert content_digests(url) == content_digests(reference_url), "per-day content digests differ"


def assert_valid(env: dict[str, str], *args: str) -> None:
    """``hospital-stream validate`` passes on the run at ``env``; its report in the failure."""
    result = cli(env, "validate", *args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def last_day(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return db.last_complete_day(conn)
    except psycopg.Error:  # not reachable, or not migrated yet
        return -2


STARTED: list[subprocess.Popen] = []


def start(argv: list[str], env: dict[str, str], out: IO[str], **popen: Any) -> subprocess.Popen:
    """A command of the project with its output (both streams) in ``out``; killed after the test
    if it outlives it."""
    process = subprocess.Popen(
        argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen
    )
    STARTED.append(process)
    return process


def start_bare_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """``faust -A hospital_stream.app worker`` with no supervisor (as compose runs it), its output
    in ``log``."""
    with log.open("w") as out:
        return start([str(BIN / "faust"), "-A", "hospital_stream.app", "worker", "-l", "info"], env, out)


def wait_for_day(url: str, process: subprocess.Popen, log: Path, day: int, timeout: float = 120) -> None:
    """Until ``day`` is stored; the test fails, with the log's tail, if ``process`` ends first."""
    wait_until(
        f"day {day} stored",
        lambda: last_day(url) >= day,
        timeout,
        give_up=lambda: process.poll() is not None,
        context=lambda: log.read_text()[-3000:],
    )


def finish_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``run`` the days still missing of the DAYS a reference run stores, at full speed."""
    remaining = DAYS - max(0, last_day(env["HOSPITAL_DATABASE_URL"]) + 1)
    return cli(env, "run", "--days", str(max(remaining, 1)), "--speed", "max")


def produce(stack: Settings, topic: str, values: list[bytes], key: bytes | None = b"bad") -> None:
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers="{}:{}".format(*stack.kafka_address), max_batch_size=1)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


# --- the clinical tests' synthetic cohort ----------------------------------------------------------

#: the cohort's first day and how many days it spans
COHORT_START = dt.date(2021, 5, 1)
COHORT_DAYS = 60

#: share of admissions and mean stay (days) per service, roughly the simulator's
MIX = {
    "medicine": (0.30, 6.5),
    "surgery": (0.17, 5.0),
    "orthopaedics": (0.08, 7.0),
    "paediatrics": (0.11, 4.0),
    "maternity": (0.19, 2.5),
    "psychiatry": (0.04, 18.0),
    "oncology": (0.05, 7.0),
    "cardiology": (0.06, 5.0),
}
ICU_WARD = 3


@dataclasses.dataclass
class Cohort:
    """Admissions arriving over the schedule (and before it), each with a planned stay."""

    admission_id: np.ndarray
    patient_id: np.ndarray
    specialty: np.ndarray
    admission_type: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    admitted_at: np.ndarray
    discharge: np.ndarray
    icu_from: np.ndarray
    icu_until: np.ndarray

    def stays(self, day: int) -> clinical.Stays:
        """Everyone in hospital at some time during ``day``."""
        day_start, day_end = day * 1440, (day + 1) * 1440
        here = (self.admitted_at < day_end) & (self.discharge > day_start)
        present_from = np.maximum(self.admitted_at[here], day_start)
        in_icu = (self.icu_from[here] <= present_from) & (present_from < self.icu_until[here])
        service = np.array([list(MIX).index(s) for s in self.specialty[here]])
        return clinical.Stays(
            admission_id=self.admission_id[here],
            patient_id=self.patient_id[here],
            ward_id=np.where(in_icu, ICU_WARD, 4 + service).astype(np.int32),
            specialty=self.specialty[here],
            in_icu=in_icu,
            age=self.age[here],
            sex=self.sex[here],
            admitted_at=self.admitted_at[here],
            present_from=present_from,
            present_until=np.minimum(self.discharge[here], day_end),
            planned_discharge=self.discharge[here],
            admission_type=self.admission_type[here],
        )


def make_cohort(
    seed: int = 5, per_day: float = 40.0, days: int = COHORT_DAYS, stay_scale: float = 1.0
) -> Cohort:
    """``per_day`` admissions a day (Poisson) with stays ``stay_scale`` times MIX's means."""
    rng = np.random.default_rng(seed)
    first = -40  # admissions before the records begin, still in hospital on day 0
    counts = rng.poisson(per_day, days - first)
    n = int(counts.sum())
    admission_day = np.repeat(np.arange(first, days), counts)
    names = np.array(list(MIX))
    share = np.array([v[0] for v in MIX.values()])
    specialty = names[rng.choice(len(names), n, p=share / share.sum())]
    mean_stay = np.array([MIX[s][1] for s in specialty]) * stay_scale
    types = np.array(sim.ADMISSION_TYPES)[rng.choice(5, n, p=[0.55, 0.15, 0.12, 0.12, 0.06])]
    stay = np.maximum(240, (rng.lognormal(np.log(mean_stay) - 0.32, 0.8) * 1440).astype(np.int64))
    stay = np.where(np.isin(types, ("OBSERVATION", "SURGICAL SAME DAY")), np.minimum(stay, 2000), stay)
    admitted_at = admission_day * 1440 + rng.integers(0, 1440, n)
    icu = rng.random(n) < 0.07
    icu_from = np.where(icu, admitted_at + (stay * rng.uniform(0.05, 0.3, n)).astype(np.int64), 10**9)
    icu_until = np.where(icu, icu_from + rng.integers(1, 5, n) * 1440, 10**9)
    age = np.where(
        specialty == "paediatrics",
        rng.uniform(0, 13, n),
        np.where(specialty == "maternity", rng.uniform(17, 44, n), rng.uniform(18, 92, n)),
    )
    sex = np.where((specialty == "maternity") | (rng.random(n) < 0.52), "F", "M")
    seq = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return Cohort(
        admission_id=(admission_day - first + 1) * 10**6 + seq,
        patient_id=rng.permutation(n) * 7 + 11,
        specialty=specialty.astype("<U16"),
        admission_type=types.astype("<U20"),
        age=age,
        sex=sex.astype("<U1"),
        admitted_at=admitted_at,
        discharge=admitted_at + stay,
        icu_from=icu_from,
        icu_until=icu_until,
    )


# --- strategies of COPY text (tests/unit/test_props_copy_text.py and its PostgreSQL twin) -------

#: the characters COPY text must escape or refuse, and a lone surrogate, beside any character
AWKWARD_CHARACTERS = "\\\t\n\r\0\b\f\v.NxX07\u00e9\u2028\U0001f600\ud800\udfff"
awkward_text = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(AWKWARD_CHARACTERS), max_size=12
)
#: text PostgreSQL can store: no NUL, no lone surrogate
storable_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\0")
    | st.sampled_from(AWKWARD_CHARACTERS[:-2].replace("\0", "")),
    max_size=12,
)
copy_text_values = st.one_of(
    st.none(),
    st.integers(),
    st.booleans(),
    st.dates(),
    st.datetimes(timezones=st.timezones()),
    awkward_text,
)
#: rows of one width, of text or NULL, as COPY text decodes them
copy_text_tables = st.integers(1, 4).flatmap(
    lambda width: st.lists(
        st.lists(st.none() | storable_text, min_size=width, max_size=width), min_size=1, max_size=5
    )
)

_NAMED_ESCAPES = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
#: after a backslash, these mean something else than themselves (``N`` alone is NULL)
_NOT_LITERAL_AFTER_BACKSLASH = set("bfnrtvx01234567.N")


def _spellings(char: str) -> list[bytes]:
    """Every way PostgreSQL's COPY text may spell one character (of text without NUL)."""
    utf8 = char.encode()
    ways = [b"".join(b"\\%03o" % byte for byte in utf8), b"".join(b"\\x%02X" % byte for byte in utf8)]
    if char not in "\\\t\n\r":
        ways.append(utf8)
    if char in _NAMED_ESCAPES:
        ways.append(b"\\" + _NAMED_ESCAPES[char].encode())
    if char not in _NOT_LITERAL_AFTER_BACKSLASH:
        ways.append(b"\\" + utf8)  # a backslash takes the next byte as it is, a tab or newline too
    return ways


def copy_spellings(table: list[list[str | None]]) -> st.SearchStrategy[bytes]:
    """COPY text that PostgreSQL reads as ``table``, each character spelled any way it may be."""

    def field(value: str | None) -> st.SearchStrategy[bytes]:
        if value is None:
            return st.just(b"\\N")
        return st.tuples(*(st.sampled_from(_spellings(c)) for c in value)).map(b"".join)

    def line(row: list[str | None]) -> st.SearchStrategy[bytes]:
        return st.tuples(*map(field, row)).map(lambda fields: b"\t".join(fields) + b"\n")

    return st.tuples(*map(line, table)).map(b"".join)


spelled_copy_tables = copy_text_tables.flatmap(lambda table: st.tuples(st.just(table), copy_spellings(table)))
#: bytes from anywhere, and bytes made mostly of what COPY text treats specially
copy_text_bytes = st.binary(max_size=64) | st.lists(
    st.sampled_from([bytes([b]) for b in b"\\\t\n\r\0.Nx7a"] + [b"\xc3", b"\xa9", b"\xff"]), max_size=24
).map(b"".join)


# --- failpoints (hospital_stream/failpoints.py) --------------------------------------------------


def failpoint_hits(log: Path) -> list[dict]:
    """The JSON lines a failpoint log holds (none yet: an empty list)."""
    try:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``T``: stopped), or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "gone"
