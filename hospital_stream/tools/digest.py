"""A digest of every message the generator sends for days 0..N-1 of one hospital.

JSON is compared field by field (keys sorted, Faust's ``__faust`` metadata dropped), so the
digest is the same for the same content whatever library encodes it; COPY-text payloads
(decompressed, whatever codec carried them) and checkpoints are compared byte for byte.
``scripts/message_digest.py`` prints it; a unit test pins it for a small hospital, so a change
to what the pipeline sends cannot pass unnoticed.
"""

from __future__ import annotations

import hashlib
import json

from hospital_stream.model import HospitalConfig, iter_days
from hospital_stream.wire.batch import encode_day, parse_batch_message
from hospital_stream.wire.messages import streamed_transfer_from_row

RUN_ID = "0" * 32


def canonical_json(raw: bytes) -> bytes:
    obj = json.loads(raw)
    obj.pop("__faust", None)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def canonical_batch(message: bytes) -> bytes:
    """The header's fields and the plain payload: the codec a chunk travelled with is no part of
    its content (its digest is over the plain payload)."""
    header = json.loads(message.partition(b"\n")[0])
    header.pop("codec", None)
    plain = parse_batch_message(message).payload
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + plain


def message_digest(config: HospitalConfig, days: int) -> str:
    """BLAKE2b over every streamed transfer and batch message of days 0..days-1, in send order."""
    digest = hashlib.blake2b(digest_size=16)
    for records in iter_days(config, days):
        for slot in records.streamed:
            for row in slot:
                raw = streamed_transfer_from_row(RUN_ID, row).dumps()
                digest.update(canonical_json(raw) + b"\0")
        for message in encode_day(RUN_ID, records):
            digest.update(canonical_batch(message) + b"\0")
    return digest.hexdigest()
