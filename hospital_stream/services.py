"""What a worker builds once, when the app starts: the hospital's wards, the PostgreSQL sink,
the generator and the two producers of its own. Nothing here runs at import: Faust creates
:class:`WorkerServices` when the app has started (``app.service``), and the agents, timers and
views wait for it with :func:`started`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from typing import Any

from mode import Service

from hospital_stream import topics
from hospital_stream.app import app, settings
from hospital_stream.model import HospitalConfig, HospitalContext, Ward
from hospital_stream.sink import PostgresSink
from hospital_stream.stream.generator import Generator
from hospital_stream.stream.watchdog import StallWatch
from hospital_stream.wire.messages import Message
from hospital_stream.wire.roles import TopicRole

logger = logging.getLogger(__name__)

#: with CPython's default 5 ms switch interval, the event loop (consumer, agents, sink,
#: producer) waits up to 5 ms for the GIL after each of its many I/O calls while the generator's
#: thread computes; 0.5 ms keeps the loop moving at little cost
SWITCH_INTERVAL_SECONDS = 0.0005


@functools.cache
def hospital() -> HospitalConfig:
    """The hospital this worker's settings describe (its wards are planned on first use)."""
    return HospitalConfig.from_settings(settings)


@functools.cache
def wards() -> dict[int, Ward]:
    return {ward.ward_id: ward for ward in hospital().wards}


@functools.cache
def context() -> HospitalContext:
    """What live messages about this hospital must agree with."""
    return hospital().context(settings.schedule_days)


class WorkerServices(Service):
    """The sink, the generator and their producers, started with the app, once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: the generator's: its batch messages of up to ~900 KB do not hold up the agents'
        #: small ones (changelogs, census)
        self.generator_producer = self._producer()
        #: the routing agent's ward and staff changes, in batches (Kafka's default size) even
        #: on the embedded broker: its ListOffsets defect does not matter here, since nothing
        #: reads the end offsets of the change topics (they are no changelogs, and the sink does
        #: not read them). Faust flushes only the app's producer before it commits, so the
        #: routing agent awaits the acknowledgements of a message's changes before the next.
        self.router_producer = self._producer(max_batch_size=16_384)
        self.sink = PostgresSink(settings, topics.SINK_TOPICS)
        self.generator = Generator(settings, self._send_generated)
        self.stall_watch = StallWatch(settings)
        self.generator_topics = {
            TopicRole.STREAMED: topics.streamed_transfers,
            TopicRole.BATCH: topics.day_batches,
            TopicRole.OCCUPANCY: topics.occupancy_changes,
            TopicRole.STAFF: topics.staff_changes,
        }

    @staticmethod
    def _producer(max_batch_size: int | None = None) -> Any:
        """Another producer of the app's settings, on a connection of its own.

        aiokafka keeps one produce request in flight per connection, and on the embedded broker
        each request carries one message per partition (``producer_max_batch_size=1``), so
        messages on one producer queue behind each other's round trips.
        """
        producer = app.transport.create_producer(loop=app.loop, beacon=app.beacon)
        if max_batch_size is not None:
            producer.max_batch_size = max_batch_size
        return producer

    def on_init_dependencies(self) -> list[Any]:
        # the producers before the sink: the sink's readiness lets the timers run
        return [self.generator_producer, self.router_producer, self.sink]

    async def on_first_start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    async def on_stop(self) -> None:
        """The generator first: mode stops a service's children (the producers, the sink) after
        its ``on_stop``, and Faust cancels the app's timers only after every service, so a timer
        that ticked on would send to a stopped producer (``NotReady``) and crash the worker.
        By now Faust has stopped the consumer: the sink's last buffer is finished or abandoned,
        and what is not acknowledged is read again on the next start."""
        last_sent = await self.generator.stop()
        done = "not generating" if last_sent is None else f"the generator stopped after day {last_sent}"
        logger.warning("worker stops: %s; anything not stored yet is read again on the next start", done)

    async def on_started(self) -> None:
        global _current
        _current = self
        _ready.set()

    async def _send_generated(self, role: TopicRole, key: str, value: Any) -> Any:
        """Send for the generator; returns the awaitable of the broker's acknowledgement.

        Straight to its producer: ``Topic.send`` would also leave a failed send's exception on
        a future nobody awaits (logged as a traceback), while the generator awaits this one.
        """
        payload = value.dumps() if isinstance(value, Message) else value
        topic = self.generator_topics[role].get_topic_name()
        return await self.generator_producer.send(topic, key.encode(), payload, None, None, None)


_current: WorkerServices | None = None
_ready = asyncio.Event()  # bound to the worker's loop when first awaited


def current() -> WorkerServices | None:
    """The worker's services if they have started, without waiting (for callbacks that must not
    block, such as the rebalance's)."""
    return _current


async def started() -> WorkerServices:
    """The worker's services, once they have all started (an agent may get its first message,
    and a timer its first tick, before the app's services are up)."""
    if _current is None:
        await _ready.wait()
    assert _current is not None
    return _current


app.service(WorkerServices)
