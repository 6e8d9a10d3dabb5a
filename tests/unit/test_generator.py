import asyncio
import math

from hospital_stream import sim
from hospital_stream.settings import Settings
from hospital_stream.stream.generator import Generator, Schedule
from hospital_stream.wire import batch
from hospital_stream.wire.batch import encode_day
from hospital_stream.wire.roles import TopicRole


def test_speed_one_is_the_real_schedule():
    schedule = Schedule(1.0)
    assert schedule.slots_due(0) == 1  # slot 0 streams at once
    assert schedule.slots_due(179.9) == 1
    assert schedule.slots_due(180) == 2
    assert schedule.days_due(899.9) == 0
    assert schedule.days_due(900) == 1
    nine_days = 9 * 24 * 3600
    assert schedule.days_due(nine_days) == 864
    assert schedule.slots_due(nine_days) == 864 * 5 + 1


def test_a_speed_factor_replays_the_same_schedule_faster():
    assert Schedule(1000.0).days_due(0.9) == 1
    assert Schedule(1000.0).slots_due(0.9) == 6
    assert Schedule(1000.0).tick_seconds() == 0.2  # catches up on several slots per tick
    assert Schedule(1.0).tick_seconds() == 1.0


def test_max_speed_is_always_due():
    assert Schedule(None).days_due(0) == math.inf
    assert Schedule(None).slots_due(0) == math.inf


def test_a_day_encodes_as_chunks_then_one_closing_message():
    config = sim.HospitalConfig(seed=1, beds=60, population=12_000)
    day0, day1 = list(sim.iter_days(config, 2))
    messages = [batch.parse_batch_message(raw) for raw in encode_day("run", day0)]
    *chunks, close = messages
    assert close.header.kind == "day" and close.header.chunks == len(chunks)
    assert [c.header.seq for c in chunks] == list(range(len(chunks)))
    assert sum(1 for c in chunks if c.header.table == "transfers") == 1
    stored = {}
    for chunk in chunks:
        stored[chunk.header.table] = stored.get(chunk.header.table, 0) + chunk.header.rows
    assert stored == {k: v for k, v in close.header.row_counts.items() if v}
    assert stored["patients"] == 12_000
    assert sim.decode_checkpoint(close.payload).next_day == 1
    # the day is complete only once the transfers it streamed live are stored too
    assert close.header.streamed == sum(len(slot) for slot in day0.streamed) > 0
    # a quiet day still has a transfers chunk, so every ward closes every day
    quiet = sim.DayRecords(1, day1.date, {"transfers": []}, [[]] * 5, day1.state)
    tables = [batch.parse_batch_message(raw).header.table for raw in encode_day("run", quiet)]
    assert tables == ["transfers", ""]


class _FakeRun:
    """A generator over a tiny hospital whose sends succeed at once, and the PostgreSQL it reads:
    ``stored`` is the last complete day and its checkpoint."""

    def __init__(self, **env: str) -> None:
        self.settings = Settings.from_env(
            {"HOSPITAL_BEDS": "60", "HOSPITAL_POPULATION": "12000", "HOSPITAL_SEED": "1", **env}
        )
        self.days = list(sim.iter_days(sim.HospitalConfig.from_settings(self.settings), 3))
        self.stored: dict = {"last": -1, "checkpoint": None}
        self.sent: list[tuple[TopicRole, bytes]] = []
        self.generator = Generator(self.settings, self._send)
        self.generator._read_resume_point = lambda url: (
            "run",
            self.stored["last"],
            self.stored["checkpoint"],
        )
        self.generator._stored_through = lambda: self.stored["last"]

    async def _send(self, role: TopicRole, key: str, value: bytes) -> asyncio.Future[None]:
        self.sent.append((role, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def store_through(self, day: int) -> None:
        self.stored.update(last=day, checkpoint=sim.encode_checkpoint(self.days[day].state))

    def closed_days(self) -> list[int]:
        headers = [
            batch.parse_batch_message(value).header for role, value in self.sent if role == TopicRole.BATCH
        ]
        return [header.day for header in headers if header.kind == "day"]


def test_a_generator_that_stopped_leading_resumes_from_postgresql_when_it_leads_again():
    # with nothing stored, only day 0 may be sent
    run = _FakeRun(HOSPITAL_SPEED="max", HOSPITAL_MAX_UNSUNK_DAYS="1")

    async def lead_then_follow_then_lead() -> None:
        await run.generator.batch_step()
        assert run.closed_days() == [0]
        await run.generator.step_down()  # another worker leads, and stores days 0..2 meanwhile
        run.store_through(2)
        run.sent.clear()
        await run.generator.batch_step()

    asyncio.run(lead_then_follow_then_lead())
    assert run.closed_days() == [3], "the generator goes on after PostgreSQL's last complete day"
    roles = [role for role, _ in run.sent]
    assert roles[0] == TopicRole.OCCUPANCY and TopicRole.STAFF in roles, (
        "the tables are reset to that day first"
    )


def test_a_leader_resumes_from_postgresql_after_a_rebalance():
    run = _FakeRun(HOSPITAL_SPEED="max", HOSPITAL_MAX_UNSUNK_DAYS="2")

    async def lead_through_a_rebalance() -> list[int]:
        await run.generator.batch_step()
        assert run.closed_days() == [0, 1]  # sent; the rebalance drops day 1's census
        run.store_through(0)
        run.sent.clear()
        run.generator.rebalanced()  # still the leader
        await run.generator.batch_step()
        after_rebalance = run.closed_days()
        run.sent.clear()
        await run.generator.batch_step()  # and no rebalance since: it goes on
        return after_rebalance

    after_rebalance = asyncio.run(lead_through_a_rebalance())
    assert after_rebalance == [1, 2], "day 1 is sent again, after the tables' snapshot of day 0"
    assert run.closed_days() == []  # day 3 waits for day 1 to be stored
