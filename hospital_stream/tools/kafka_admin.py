"""The run's topics on the broker, embedded or not: the consumer group's lag, and deleting them
so that a reset run starts from nothing."""

from __future__ import annotations

import asyncio
import logging
import socket

from hospital_stream.errors import HospitalStreamError
from hospital_stream.settings import Settings


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
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    async def lag() -> str:
        consumer = AIOKafkaConsumer(
            bootstrap_servers="{}:{}".format(*settings.kafka_address),
            group_id=settings.app_id,
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        await consumer.start()
        try:
            topics = sorted(t for t in await consumer.topics() if t.startswith(settings.topic_prefix + "."))
            parts = [
                TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            ends = await consumer.end_offsets(parts) if parts else {}
            behind: dict[str, int] = {}
            for tp in parts:
                committed = await consumer.committed(tp) or 0
                behind[tp.topic] = behind.get(tp.topic, 0) + max(0, ends[tp] - committed)
        finally:
            await consumer.stop()
        return ", ".join(f"{t} {n:,}" for t, n in behind.items()) or "no topics yet"

    try:
        socket.create_connection(settings.kafka_address, timeout=2).close()
    except OSError:
        return f"unknown: no broker answers at {settings.kafka_url}"
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the reason is reported below
    try:
        return asyncio.run(asyncio.wait_for(lag(), 10))
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"unknown: the broker at {settings.kafka_url} did not answer ({type(exc).__name__})"
