"""The worker's stall watchdog: work pending and no progress for the limit is a stall; quiet
without work, or an unreachable PostgreSQL, is not."""

from __future__ import annotations

import asyncio

from hospital_stream.errors import WorkerStalled
from hospital_stream.settings import Settings
from hospital_stream.stream.watchdog import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(postgres_answers: bool = True, **env: str) -> tuple[StallWatch, Clock]:
    clock = Clock()
    watch = StallWatch(
        Settings.from_env({"HOSPITAL_STALL_SECONDS": "30", "HOSPITAL_SPEED": "max", **env}), clock
    )
    watch._postgres_answers = lambda: postgres_answers  # type: ignore[method-assign]
    return watch, clock


def test_the_limit_is_the_setting_but_at_least_three_stream_slots():
    assert Settings.from_env({"HOSPITAL_STALL_SECONDS": "30", "HOSPITAL_SPEED": "max"}).stall_limit == 30
    assert Settings.from_env({"HOSPITAL_STALL_SECONDS": "30", "HOSPITAL_SPEED": "1"}).stall_limit == 540
    assert Settings.from_env({"HOSPITAL_STALL_SECONDS": "30", "HOSPITAL_SPEED": "60"}).stall_limit == 30


def test_a_sink_blocked_in_a_store_for_longer_than_the_limit_is_a_stall():
    watch, clock = _watch()
    clock.now += 3600  # an hour without work is no stall, and does not count later
    assert asyncio.run(watch.check(generator_held=False)) is None
    with watch.storing():
        clock.now += 29
        assert asyncio.run(watch.check(generator_held=False)) is None
        clock.now += 2
        stall = asyncio.run(watch.check(generator_held=False))
    assert isinstance(stall, WorkerStalled) and stall.exit_code == 70
    assert "stored nothing for 31 s" in str(stall) and "HOSPITAL_STALL_SECONDS" in str(stall)


def test_each_commit_is_progress():
    watch, clock = _watch()
    for _ in range(10):
        with watch.storing():
            clock.now += 20
    assert watch.quiet_seconds(generator_held=True) == 0
    clock.now += 31
    assert asyncio.run(watch.check(generator_held=True)) is not None, "held days are work too"


def test_time_while_postgresql_does_not_answer_is_no_stall():
    watch, clock = _watch(postgres_answers=False)
    with watch.storing():
        clock.now += 60
        assert asyncio.run(watch.check(generator_held=False)) is None
        assert watch.quiet_seconds(generator_held=False) == 0  # counted again from now
