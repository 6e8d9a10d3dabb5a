"""The run's topics on the broker, embedded or not: the consumer group's lag, waiting until it
has committed everything it consumed, and deleting the topics so that a reset run starts from
nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hospital_stream.errors import HospitalStreamError
from hospital_stream.settings import Settings
from hospital_stream.wire.roles import INPUT_ROLES

T = TypeVar("T")
#: how long ``run`` waits for the worker to commit what it consumed, and how often it looks
DRAIN_SECONDS = 60.0
DRAIN_CHECK_SECONDS = 2.0


def delete_topics(settings: Settings) -> list[str]:
    """Delete the run's topics and the app's changelogs, so a reset run starts from nothing."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    async def delete() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers="{}:{}".format(*settings.kafka_address))
        await admin.start()
        try:
            ours = [
                t
                for t in await admin.list_topics()
                if t.startswith((settings.topic_prefix + ".", settings.app_id + "-"))
            ]
            if ours:
                await admin.delete_topics(ours)
            return ours
        finally:
            await admin.close()

    try:
        deleted = asyncio.run(asyncio.wait_for(delete(), 30))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise HospitalStreamError(
            f"cannot delete the old run's topics at {settings.kafka_url}: {exc!r}"
        ) from exc
    return deleted


def consumer_lag(settings: Settings) -> str:
    """Messages the worker's consumer group has not committed yet, per topic."""

    async def lag(consumer: Any) -> str:
        topics = sorted(t for t in await consumer.topics() if t.startswith(settings.topic_prefix + "."))
        behind = await _behind(consumer, topics, keep_zero=True)
        return ", ".join(f"{t} {n:,}" for t, n in behind.items()) or "no topics yet"

    if not _broker_answers(settings):
        return f"unknown: no broker answers at {settings.kafka_url}"
    try:
        return asyncio.run(asyncio.wait_for(_with_group_consumer(settings, lag), 10))
    except _broker_errors() as exc:
        return f"unknown: the broker at {settings.kafka_url} did not answer ({type(exc).__name__})"


def wait_until_drained(
    settings: Settings,
    stop_requested: Callable[[], bool] = lambda: False,
    timeout: float = DRAIN_SECONDS,
    every: float = DRAIN_CHECK_SECONDS,
) -> str | None:
    """Wait until the worker's consumer group has committed up to the end offsets of every input
    topic, seen twice ``every`` seconds apart (a message consumed at the first look may have
    sent a dead letter by the second); None when it has, else one line saying what is left
    after ``timeout`` seconds (or when ``stop_requested()``)."""
    topics = [role.topic(settings.topic_prefix) for role in INPUT_ROLES]

    async def drain(consumer: Any) -> dict[str, int]:
        deadline, calm = time.monotonic() + timeout, 0
        while True:
            behind = await _behind(consumer, topics, keep_zero=False)
            calm = 0 if behind else calm + 1
            if calm >= 2 or time.monotonic() + every > deadline or stop_requested():
                return behind
            await asyncio.sleep(every)

    if not _broker_answers(settings):
        return f"not drained: no broker answers at {settings.kafka_url}"
    try:
        behind = asyncio.run(asyncio.wait_for(_with_group_consumer(settings, drain), timeout + 30))
    except _broker_errors() as exc:
        return f"not drained: the broker at {settings.kafka_url} did not answer ({type(exc).__name__})"
    if not behind or stop_requested():  # asked to stop: the worker's shutdown commits what it has
        return None
    left = ", ".join(f"{t} {n:,}" for t, n in behind.items())
    return (
        f"the worker had not committed all it consumed after {timeout:.0f} s, stopping it anyway"
        f" (dead letters of these may be lost): {left}"
    )


async def _with_group_consumer(settings: Settings, use: Callable[[Any], Awaitable[T]]) -> T:
    """``use(consumer)`` with a consumer of the worker's group that joins nothing (it only asks
    for committed and end offsets)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers="{}:{}".format(*settings.kafka_address),
        group_id=settings.app_id,
        enable_auto_commit=False,
        request_timeout_ms=5000,
    )
    await consumer.start()
    try:
        return await use(consumer)
    finally:
        await consumer.stop()


async def _behind(consumer: Any, topics: list[str], *, keep_zero: bool) -> dict[str, int]:
    """Per topic, how many messages the group has not committed (topics not on the broker count
    as empty); ``keep_zero`` keeps the topics with none."""
    from aiokafka import TopicPartition

    await consumer.topics()  # fresh metadata: the partitions of topics created since
    parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    ends = await consumer.end_offsets(parts) if parts else {}
    behind: dict[str, int] = {}
    for tp in parts:
        committed = await consumer.committed(tp) or 0
        count = behind.get(tp.topic, 0) + max(0, ends[tp] - committed)
        if count or keep_zero:
            behind[tp.topic] = count
    return behind


def _broker_answers(settings: Settings) -> bool:
    try:
        socket.create_connection(settings.kafka_address, timeout=2).close()
    except OSError:
        return False
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the caller reports the reason
    return True


def _broker_errors() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaError

    return (KafkaError, OSError, TimeoutError)
