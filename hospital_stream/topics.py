"""Topic handles. Names follow ``<prefix>.<entity>.<event>`` (prefix ``hospital`` unless
HOSPITAL_TOPIC_PREFIX says otherwise); every send carries a key."""

from __future__ import annotations

from hospital_stream.app import app, settings
from hospital_stream.wire.roles import SINK_ROLES, TopicRole

_prefix = settings.topic_prefix
STREAMED_TRANSFERS = TopicRole.STREAMED.topic(_prefix)
DAY_BATCHES = TopicRole.BATCH.topic(_prefix)
WARD_CENSUS = TopicRole.CENSUS.topic(_prefix)
OCCUPANCY_CHANGES = TopicRole.OCCUPANCY.topic(_prefix)
STAFF_CHANGES = TopicRole.STAFF.topic(_prefix)
DEAD_LETTERS = TopicRole.DEAD_LETTERS.topic(_prefix)
BROKER_EPOCH = TopicRole.BROKER_EPOCH.topic(_prefix)

#: what the sink does with each topic it consumes
SINK_TOPICS = {role.topic(_prefix): role for role in SINK_ROLES}

_partitions = settings.topic_partitions
# internal=True: Faust creates these topics with our partition count before it subscribes
# (a broker that auto-creates a topic on first use would pick its own count).

# External input is read as raw bytes and validated in the agents (see wire/).
streamed_transfers = app.topic(
    STREAMED_TRANSFERS, value_serializer="raw", partitions=_partitions, internal=True
)
day_batches = app.topic(DAY_BATCHES, value_serializer="raw", partitions=_partitions, internal=True)
ward_census = app.topic(WARD_CENSUS, value_serializer="raw", partitions=_partitions, internal=True)
#: what the sink consumes: live transfers, batches and the census, as one stream
sink_input = app.topic(*SINK_TOPICS, value_serializer="raw", partitions=_partitions, internal=True)
#: what the routing agent reads: everything that moves patients or staff
hospital_records = app.topic(
    STREAMED_TRANSFERS, DAY_BATCHES, value_serializer="raw", partitions=_partitions, internal=True
)
# Re-keyed internal topics: one ward's (or one staff member's) changes stay in one partition,
# the partition that also holds that key's table entry. Raw too: anything can be written to
# a topic, and Faust would drop a value it cannot decode before the agent saw it.
occupancy_changes = app.topic(
    OCCUPANCY_CHANGES, value_serializer="raw", partitions=_partitions, internal=True
)
staff_changes = app.topic(STAFF_CHANGES, value_serializer="raw", partitions=_partitions, internal=True)
#: what agents without a database could not use; the sink stores it in ``dead_letters``
dead_letters = app.topic(DEAD_LETTERS, value_serializer="raw", partitions=_partitions, internal=True)
#: one marker per worker start: a broker that no longer holds a worker's marker lost everything
broker_epoch = app.topic(BROKER_EPOCH, value_serializer="raw", partitions=1, internal=True)
