"""Dead letters on the wire: what an agent without a database hands to the sink, and the kinds
of dead letter ``dead_letters.kind`` may hold."""

from __future__ import annotations

import enum
import json

from hospital_stream.wire.fields import SCHEMA_VERSION


class DeadLetterKind(enum.StrEnum):
    """Why a message (or one row of it) is in ``dead_letters``; migration 0009's CHECK lists
    exactly these values."""

    #: the sink could not validate the message (or it belongs to another run)
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


def encode_dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    reason: str,
    raw: bytes | None,
    kind: DeadLetterKind = DeadLetterKind.AGENT_REJECTED,
) -> bytes:
    """A message for the dead-letter topic: what an agent without a database could not use.

    ``kind`` is optional on the wire: a message without it is ``agent_rejected``."""
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "kind": str(kind),
            "reason": reason[:1000],
            "key": (key or b"").hex(),
            "payload": (raw or b"")[:65536].hex(),
            "payload_bytes": len(raw or b""),
        }
    ).encode()
