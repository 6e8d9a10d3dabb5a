"""How a batch chunk's COPY text travels: as it is (``none``) or as one Zstandard frame (``zstd``).

The chunk's header names the codec; its digest is over the plain COPY text, so a chunk has one
digest whatever codec carried it (the chunk ledger compares copies by it). Decompression is
capped: a frame must declare its size, which must stay within the limit, and libzstd refuses
to write past what the frame declared, so a decompression bomb costs at most the limit.
"""

from __future__ import annotations

from typing import Literal

import zstandard

from hospital_stream.errors import InvalidMessage
from hospital_stream.wire.kinds import DeadLetterKind

Codec = Literal["none", "zstd"]
CODECS: tuple[Codec, ...] = ("none", "zstd")
#: what the generator sends: Zstandard at level 3 (libzstd's default) shrinks a hospital day's
#: COPY text about 5.5x and the broker keeps that much less (docs/benchmarks.md, bench-broker)
DEFAULT_CODEC: Codec = "zstd"
ZSTD_LEVEL = 3


def compress(codec: Codec, payload: bytes) -> bytes:
    """``payload`` as ``codec`` carries it."""
    if codec == "none":
        return payload
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(payload)


def decompress(codec: Codec, data: bytes, limit: int) -> bytes:
    """The plain bytes ``data`` carries under ``codec``, at most ``limit`` of them; a frame that
    is corrupt, has bytes after it, does not declare its size or declares more is refused."""
    if codec == "none":
        return data
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise InvalidMessage(f"corrupt zstd payload: {str(exc)[:120]}") from exc
    if declared == -1:
        raise InvalidMessage("zstd payload whose frame does not declare its size")
    if declared > limit:
        raise InvalidMessage(
            f"zstd payload would decompress to {declared} bytes, over the limit of {limit}",
            DeadLetterKind.OVERSIZED,
        )
    try:
        return zstandard.ZstdDecompressor().decompress(data, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise InvalidMessage(f"corrupt zstd payload: {str(exc)[:120]}") from exc
