"""A digest of every message the generator sends for days 0..N of one hospital.

Run before and after a change that must not alter what the pipeline sends::

    python scripts/message_digest.py --days 41                 # the default hospital
    python scripts/message_digest.py --days 41 --beds 120 --population 40000

JSON is compared field by field (keys sorted, Faust's ``__faust`` metadata dropped), so the
digest is the same for the same content whatever library encodes it; COPY-text payloads and
checkpoints are compared byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json

try:  # the layered package
    from hospital_stream.model import HospitalConfig, iter_days
    from hospital_stream.wire.batch import encode_day
    from hospital_stream.wire.messages import streamed_transfer_from_row
except ImportError:  # the flat package it came from
    from hospital_stream.generator import encode_day  # type: ignore[no-redef]
    from hospital_stream.models import streamed_transfer_from_row  # type: ignore[no-redef]

    from hospital_stream.sim import HospitalConfig, iter_days  # type: ignore[no-redef]

RUN_ID = "0" * 32


def canonical_json(raw: bytes) -> bytes:
    obj = json.loads(raw)
    obj.pop("__faust", None)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def canonical_batch(message: bytes) -> bytes:
    header, _, payload = message.partition(b"\n")
    return canonical_json(header) + b"\n" + payload


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=41)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--beds", type=int, default=1800)
    parser.add_argument("--population", type=int, default=5_000_000)
    args = parser.parse_args()
    config = HospitalConfig(seed=args.seed, beds=args.beds, population=args.population)
    print(message_digest(config, args.days))


if __name__ == "__main__":
    main()
