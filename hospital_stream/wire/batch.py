"""Batch messages: one simulated day as chunks of COPY-text rows, then the day's closing message.

A batch message is a JSON header line, a newline, then a payload: for a ``chunk``, rows of one
table in PostgreSQL's COPY text format, so the sink can hand them to ``COPY ... FROM STDIN``
untouched; for the day's closing ``day`` message, the simulator's zlib-compressed checkpoint.
A chunk's rows travel compressed (the header's ``codec``, :mod:`hospital_stream.wire.compression`).
The header carries a digest of the plain payload, so a chunk is validated cheaply, whatever
codec carried it, and PostgreSQL's constraints check the rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, Literal

from hospital_stream.errors import InvalidMessage
from hospital_stream.model import CHUNK_ROWS, DayRecords, collection_paused, encode_checkpoint
from hospital_stream.model.columns import Columns
from hospital_stream.schema import TABLES, TableSpec
from hospital_stream.wire.compression import CODECS, DEFAULT_CODEC, Codec, compress, decompress
from hospital_stream.wire.copy_text import decode_copy_rows, digest, encode_copy_rows
from hospital_stream.wire.fields import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    check_version,
    json_object,
    require,
    require_count,
    require_counts,
)
from hospital_stream.wire.kinds import DeadLetterKind

#: Every batch message has the same key, so all days travel through one partition in order:
#: a day's updates and references always find the rows of the days before it stored.
BATCH_KEY = "hospital-batch"

# --- batch messages ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    """The header line of a batch message."""

    kind: Literal["chunk", "day"]
    run_id: str
    day: int
    seq: int
    table: str
    rows: int
    #: the BLAKE2b-128 of the plain payload (before compression), hex
    digest: str
    #: how the payload travels: ``none`` or ``zstd``
    codec: Codec = "none"
    #: only on the ``day`` message: how many chunks the day has, its date, rows per table, and
    #: how many of its transfers were streamed live (the day is complete only once they are stored)
    chunks: int = 0
    date: str = ""
    row_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    streamed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "kind": self.kind,
            "run": self.run_id,
            "day": self.day,
            "seq": self.seq,
            "table": self.table,
            "rows": self.rows,
            "digest": self.digest,
            "codec": self.codec,
            "chunks": self.chunks,
            "date": self.date,
            "row_counts": self.row_counts,
            "streamed": self.streamed,
        }


@dataclasses.dataclass(frozen=True)
class BatchMessage:
    """A parsed batch message; ``payload`` is plain (decompressed, its digest checked)."""

    header: BatchHeader
    payload: bytes

    def key(self) -> str:
        """The key it travels with."""
        return BATCH_KEY

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.header.table]

    def rows(self) -> list[list[str | None]]:
        return list(decode_copy_rows(self.payload))


def encode_chunk(
    run_id: str, day: int, seq: int, table: str, rows: Sequence[Sequence[Any]], codec: Codec = "none"
) -> bytes:
    return chunk_message(run_id, day, seq, table, encode_copy_rows(rows), len(rows), codec)


def chunk_message(
    run_id: str, day: int, seq: int, table: str, payload: bytes, rows: int, codec: Codec = "none"
) -> bytes:
    """A chunk of ``rows`` rows already in COPY text, ``payload`` compressed by ``codec``."""
    header = BatchHeader("chunk", run_id, day, seq, table, rows, digest(payload), codec)
    return _join(header, compress(codec, payload))


def encode_day_close(
    run_id: str,
    day: int,
    seq: int,
    date: dt.date,
    row_counts: dict[str, int],
    streamed: int,
    checkpoint: bytes,
) -> bytes:
    header = BatchHeader(
        "day",
        run_id,
        day,
        seq,
        "",
        0,
        digest(checkpoint),
        chunks=seq,
        date=date.isoformat(),
        row_counts=row_counts,
        streamed=streamed,
    )
    return _join(header, checkpoint)


def _join(header: BatchHeader, payload: bytes) -> bytes:
    return json.dumps(header.to_json(), separators=(",", ":")).encode() + b"\n" + payload


def batch_table(raw: bytes | None) -> str | None:
    """The table a batch message's header names, read from its header line alone (None when
    that line is not a JSON object): for a reader that skips most tables unvalidated."""
    head = (raw or b"").partition(b"\n")[0]
    try:
        obj = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    table = obj.get("table") if isinstance(obj, dict) else None
    return table if isinstance(table, str) else None


def parse_batch_message(raw: bytes | None) -> BatchMessage:
    """Validate a batch message's header and digest (not its rows: PostgreSQL checks those)."""
    if not raw:
        raise InvalidMessage("empty message")
    head, sep, payload = raw.partition(b"\n")
    if not sep:
        raise InvalidMessage("no header line")
    obj = json_object(head)
    check_version(obj.get("v"))
    kind = obj.get("kind")
    if kind not in ("chunk", "day"):
        raise InvalidMessage(f"unknown batch message kind {str(kind)[:40]!r}")
    table = obj.get("table", "")
    if not isinstance(table, str) or (kind == "chunk" and table not in TABLES):
        raise InvalidMessage(f"unknown table {str(table)[:40]!r}", DeadLetterKind.UNKNOWN_TABLE)
    codec = obj.get("codec", "none")
    if codec not in CODECS:
        raise InvalidMessage(f"unknown payload codec {str(codec)[:40]!r}")
    header = BatchHeader(
        kind=kind,
        run_id=require(obj, "run", str),
        day=require_count(obj, "day"),
        seq=require_count(obj, "seq"),
        table=table,
        rows=require_count(obj, "rows"),
        digest=require(obj, "digest", str),
        codec=codec,
        chunks=require_count(obj, "chunks"),
        date=require(obj, "date", str),
        row_counts=require_counts(obj, "row_counts"),
        streamed=require_count(obj, "streamed"),
    )
    if kind == "day":
        try:
            dt.date.fromisoformat(header.date)
        except ValueError as exc:
            raise InvalidMessage(f"day message with date {header.date[:40]!r}") from exc
    # the plain payload, at most as large as a whole plain message may be: a bomb is refused
    payload = decompress(codec, payload, MAX_MESSAGE_BYTES)
    if digest(payload) != header.digest:
        raise InvalidMessage("payload digest mismatch", DeadLetterKind.DIGEST)
    lines = payload.count(b"\n")
    if kind == "chunk" and payload and not payload.endswith(b"\n"):  # COPY would store one more row
        raise InvalidMessage("chunk whose last row has no newline")
    if kind == "chunk" and lines != header.rows:
        raise InvalidMessage(f"header says {header.rows} rows, payload has {lines}")
    return BatchMessage(header, payload)


def table_payload(
    rows: Sequence[tuple[Any, ...]] | Columns, start: int = 0, stop: int | None = None
) -> bytes:
    """Rows ``[start, stop)`` of one of a day's tables as the COPY text a chunk carries."""
    if isinstance(rows, Columns):
        return rows.copy_text(start, stop)
    return encode_copy_rows(rows[start:stop])


def encode_day(run_id: str, records: DayRecords, codec: Codec = DEFAULT_CODEC) -> list[bytes]:
    """A day's batch as chunk messages (their rows compressed by ``codec``) followed by the
    closing message with the checkpoint."""
    with collection_paused():
        return _encode_day(run_id, records, codec)


def _encode_day(run_id: str, records: DayRecords, codec: Codec) -> list[bytes]:
    messages: list[bytes] = []
    largest = 0  # the largest plain payload: a reader decompresses at most MAX_MESSAGE_BYTES
    for table, rows in records.tables.items():
        # a day's transfers travel in one chunk: the routing agent closes each ward's day on it
        step = len(rows) or 1 if table == "transfers" else CHUNK_ROWS
        for start in range(0, len(rows), step):
            stop = min(start + step, len(rows))
            payload = table_payload(rows, start, stop)
            largest = max(largest, len(payload))
            messages.append(
                chunk_message(run_id, records.day, len(messages), table, payload, stop - start, codec)
            )
        if table == "transfers" and not rows:
            messages.append(chunk_message(run_id, records.day, len(messages), table, b"", 0, codec))
    for size in (largest, *map(len, messages)):
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"day {records.day}: a batch message of {size} bytes is too large")
    checkpoint = encode_checkpoint(records.state)
    streamed = sum(len(slot) for slot in records.streamed)
    messages.append(
        encode_day_close(
            run_id, records.day, len(messages), records.date, records.row_counts(), streamed, checkpoint
        )
    )
    return messages
