"""Why a message (or one row of it) is a dead letter: the one list of ``dead_letters.kind``
values, which the wire's checks raise and the schema's CHECK allows (migration 0010)."""

from __future__ import annotations

import enum


class DeadLetterKind(enum.StrEnum):
    """Why a message (or one row of it) is in ``dead_letters``; migration 0010's CHECK lists
    exactly these values."""

    #: the sink or an agent could not validate the message (bad JSON, a missing field, a value
    #: out of range) and no kind below says more
    INVALID_MESSAGE = "invalid_message"
    #: one row of a batch chunk that PostgreSQL refused
    BAD_ROW = "bad_row"
    #: a chunk refused whole because a chunk before it is not stored; its copy sent again is
    OUT_OF_ORDER = "out_of_order"
    #: a streamed transfer that the batch of its day does not hold
    UNCONFIRMED_STREAM = "unconfirmed_stream"
    #: a message an agent could not use, sent to the sink through the dead-letter topic
    AGENT_REJECTED = "agent_rejected"
    #: only rows stored before migration 0009 whose reason told nothing more; never written now
    UNCLASSIFIED = "unclassified"
    #: a day at or past the end of the schedule (HOSPITAL_SCHEDULE_DAYS)
    OUTSIDE_SCHEDULE = "outside_schedule"
    #: a message for a day already complete that is not a copy of what is stored
    DAY_CLOSED = "day_closed"
    #: a chunk or day message that contradicts the one stored under its day and sequence number
    CONFLICT = "conflict"
    #: a batch chunk naming a table no batch carries
    UNKNOWN_TABLE = "unknown_table"
    #: a message of another run than the one the database holds
    WRONG_RUN = "wrong_run"
    #: a batch message whose payload does not match its header's BLAKE2b-128 digest
    DIGEST = "digest"
    #: a schema (wire) version this worker does not speak
    VERSION = "version"
    #: a null value (a Kafka tombstone)
    TOMBSTONE = "tombstone"
    #: a message without a key, or with a key that is not the one its payload calls for
    BAD_KEY = "bad_key"
    #: a message over the wire's size limit (MAX_MESSAGE_BYTES)
    OVERSIZED = "oversized"
    #: a bad message on the dead-letter topic itself, stored as a dead letter of its own
    BAD_DEAD_LETTER = "bad_dead_letter"


#: the kinds an agent may send through the dead-letter topic: what it can tell without a database
AGENT_KINDS = frozenset(
    {
        DeadLetterKind.AGENT_REJECTED,
        DeadLetterKind.OUTSIDE_SCHEDULE,
        DeadLetterKind.TOMBSTONE,
        DeadLetterKind.BAD_KEY,
        DeadLetterKind.OVERSIZED,
        DeadLetterKind.VERSION,
    }
)
