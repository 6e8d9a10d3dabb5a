"""What each topic carries: one vocabulary for the topics' names and for what the generator,
the agents and the sink do with them."""

from __future__ import annotations

import enum


class TopicRole(enum.StrEnum):
    """A topic's role; its value is the ``<entity>.<event>`` part of its name."""

    STREAMED = "transfers.streamed"
    BATCH = "records.batch"
    CENSUS = "census.daily"
    OCCUPANCY = "occupancy.changes"
    STAFF = "staff.changes"
    DEAD_LETTERS = "deadletter"
    BROKER_EPOCH = "broker.epoch"

    def topic(self, prefix: str) -> str:
        """The topic's name under ``prefix`` (``hospital.transfers.streamed``)."""
        return f"{prefix}.{self.value}"


#: what the sink consumes and stores
SINK_ROLES = (TopicRole.STREAMED, TopicRole.BATCH, TopicRole.CENSUS, TopicRole.DEAD_LETTERS)
#: what the worker's consumer group reads (the sink's topics, and those of the table agents,
#: which dead-letter what they cannot use); not the broker epoch, which only the watch reads
INPUT_ROLES = (*SINK_ROLES, TopicRole.OCCUPANCY, TopicRole.STAFF)
