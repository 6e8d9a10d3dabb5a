"""Two workers share the partitions of one embedded stack: tables and sink split cleanly, only the
leader generates, and a worker SIGKILLed mid-run hands its partitions to the other, which finishes
the run with exactly the rows of a single-worker run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (
    BIN,
    DAYS,
    STARTED,
    assert_same_records,
    assert_valid,
    cli,
    free_port,
    hospital_env,
    last_day,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
#: 1.5 s a simulated day: the run lasts long enough to kill a worker with most days still to come
SPEED = "600"


class Worker:
    """One ``hospital-stream worker`` process with its own web port and log file."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.port = free_port()
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "hospital-stream"), "worker", "--loglevel", "info"],
                env={**env, "HOSPITAL_WEB_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        STARTED.append(self.process)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.load(response)

    def consumer(self) -> tuple[dict, set[tuple[str, int]]]:
        """Where this worker says the generator runs (``state``: ``here``, ``elsewhere`` or
        ``unknown``; ``leader_url``), and the partitions its consumer holds (none while unreachable)."""
        try:
            pipeline = self.get("/dashboard/api/pipeline")
        except OSError:
            return {"state": "unknown", "leader_url": None}, set()
        return pipeline["generator"], {
            (p["topic"], p["partition"]) for p in pipeline["consumer"]["partitions"]
        }

    def wards(self) -> set[int]:
        return {ward["ward_id"] for ward in self.get("/occupancy/")["wards"]}

    def days_sent(self) -> list[int]:
        return [int(day) for day in re.findall(r"sent day (\d+) ", self.log.read_text())]


def _wait_for(what: str, condition, timeout: float, workers: list[Worker]):
    return wait_until(
        what,
        condition,
        timeout,
        give_up=lambda: any(w.process.poll() is not None for w in workers),
        context=lambda: "\n".join(f"--- {w.name}\n{w.log.read_text()[-2500:]}" for w in workers),
    )


def _split(workers: list[Worker]):
    """Both workers hold partitions, none twice, one of them leads and the other's dashboard
    names it as the generator's worker; then (leader, follower)."""
    held = [w.consumer() for w in workers]
    if not all(partitions for _, partitions in held) or held[0][1] & held[1][1]:
        return None
    leaders = [w for w, (generator, _) in zip(workers, held, strict=True) if generator["state"] == "here"]
    if len(leaders) != 1:
        return None
    leader = leaders[0]
    follower = next(w for w in workers if w is not leader)
    elsewhere = held[workers.index(follower)][0]
    if elsewhere["state"] != "elsewhere" or elsewhere["leader_url"] != f"http://127.0.0.1:{leader.port}":
        return None
    return leader, follower


@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_two_workers_share_the_partitions_and_one_survives_a_kill(
    victim, reference_run, embedded_stack, tmp_path, record_property
):
    env = hospital_env(
        embedded_stack,
        default_logins=True,
        HOSPITAL_TOPIC_PARTITIONS=str(PARTITIONS),
        HOSPITAL_SPEED=SPEED,
        HOSPITAL_RUN_UNTIL_DAY=str(DAYS),
    )
    url = env["HOSPITAL_DATABASE_URL"]
    assert cli(env, "stack", "up").returncode == 0  # the run's database, migrated
    workers = [Worker(name, env, tmp_path / f"{name}.log") for name in ("a", "b")]

    leader, follower = _wait_for("split of the partitions", lambda: _split(workers), 90, workers)
    _wait_for("day 1 stored", lambda: last_day(url) >= 1, 90, workers)
    leader_wards, follower_wards = leader.wards(), follower.wards()
    assert leader_wards and follower_wards and not leader_wards & follower_wards
    assert not follower.days_sent(), "only the leader generates"

    everything = leader.consumer()[1] | follower.consumer()[1]
    killed, survivor = (leader, follower) if victim == "leader" else (follower, leader)
    stored_at_kill = last_day(url)
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait()
    sent_before_kill = len(survivor.days_sent())
    assert stored_at_kill < DAYS - 4, "the kill came too late to prove anything"

    _wait_for("the last day stored", lambda: last_day(url) >= DAYS - 1, 180, [survivor])
    generator, holds = survivor.consumer()
    wards_after = survivor.wards()  # its own and, recovered from the changelog, the other's
    survivor.process.send_signal(signal.SIGTERM)
    survivor.process.wait(timeout=60)

    record_property("fault", f"SIGKILLed the {victim} with days up to {stored_at_kill} of {DAYS} stored")
    assert generator["state"] == "here" and everything <= holds, "the survivor took over everything"
    assert wards_after == leader_wards | follower_wards
    output = survivor.log.read_text()
    assert "Traceback" not in output
    if victim == "leader":
        assert sent_before_kill == 0
        resumed = [int(day) for day in re.findall(r"generator resumes at simulated day (\d+)", output)]
        assert resumed and min(resumed) > stored_at_kill, "resumed from PostgreSQL's last complete day"
    assert_same_records(url, reference_run["HOSPITAL_DATABASE_URL"])
    assert_valid(env)
