"""Dead letters on the wire: what an agent without a database hands to the sink."""

from __future__ import annotations

import json

from hospital_stream.wire.fields import SCHEMA_VERSION


def encode_dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, reason: str, raw: bytes | None
) -> bytes:
    """A message for the dead-letter topic: what an agent without a database could not use."""
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason[:1000],
            "key": (key or b"").hex(),
            "payload": (raw or b"")[:65536].hex(),
            "payload_bytes": len(raw or b""),
        }
    ).encode()
