"""Dead letters on the wire: what an agent without a database hands to the sink (the kinds of
dead letter ``dead_letters.kind`` may hold are in ``kinds.py``)."""

from __future__ import annotations

import json

from hospital_stream.wire.fields import SCHEMA_VERSION
from hospital_stream.wire.kinds import AGENT_KINDS, DeadLetterKind

__all__ = ["AGENT_KINDS", "DeadLetterKind", "encode_dead_letter"]


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
