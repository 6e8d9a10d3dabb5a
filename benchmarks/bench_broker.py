"""Batch chunks through the embedded broker: no compression, protocol compression, payload compression.

``python -m benchmarks.bench_broker [--days N] [--beds B] [--population P] [--seed S]
[--modes M,M,...] [--json PATH]``

The chunk messages of days 1..N (day 0, the whole catchment, is left out: one day of a running
schedule is what the broker carries every 15 minutes) are sent through a fresh embedded Tansu
broker per mode, then read back, with a producer like the generator's (one message per
produce batch, ``acks=all``) and a consumer like the sink's. For each mode it prints:

- the MB/s of the chunks' plain bytes through the broker (produce, consume, both), the time
  to compress or decompress included;
- the CPU seconds of this process (what the worker would spend) and of the broker;
- how much the broker's resident memory grew: its storage is ``memory://``, so that is where
  it keeps the messages (there are no files);
- whether every chunk came back intact: each consumed payload (decompressed where the mode
  compressed it) must equal what was sent, byte for byte.

The modes: ``none``; ``protocol-gzip``, ``protocol-snappy``, ``protocol-lz4``, ``protocol-zstd``
(aiokafka's ``compression_type``: the producer compresses each record batch, the broker stores
it and hands it back, the consumer decompresses); ``payload-zstd`` (the chunk's COPY text
compressed inside the message, as the generator sends it: :mod:`hospital_stream.wire.batch`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common import (
    MB,
    add_hospital_arguments,
    hospital_settings,
    loadavg,
    num,
    positive_int,
    rate,
    stack_settings,
    to_json,
    traversable_tempdir,
)
from hospital_stream.devstack import stack
from hospital_stream.model import HospitalConfig, iter_days
from hospital_stream.wire.batch import batch_table, chunk_message, encode_day, parse_batch_message
from hospital_stream.wire.compression import Codec

TOPIC = "bench.records.batch"
KEY = b"hospital-batch"
PROTOCOL_CODECS = ("gzip", "snappy", "lz4", "zstd")
MODES = ("none", *(f"protocol-{codec}" for codec in PROTOCOL_CODECS), "payload-zstd")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Result:
    mode: str
    messages: int
    plain_bytes: int
    sent_bytes: int
    produce_seconds: float
    consume_seconds: float
    client_cpu_seconds: float
    broker_cpu_seconds: float
    broker_rss_growth: int
    intact: bool
    error: str = ""
    load: str = ""

    def row(self) -> str:
        if self.error:
            return f"{self.mode:<16} failed: {self.error}"
        total = self.produce_seconds + self.consume_seconds
        return (
            f"{self.mode:<16} {num(rate(self.plain_bytes / MB, self.produce_seconds), 1):>8} "
            f"{num(rate(self.plain_bytes / MB, self.consume_seconds), 1):>8} "
            f"{num(rate(self.plain_bytes / MB, total), 1):>8} {self.sent_bytes / MB:>9.1f} "
            f"{self.client_cpu_seconds:>8.2f} {self.broker_cpu_seconds:>8.2f} "
            f"{self.broker_rss_growth / MB:>9.1f}  {'yes' if self.intact else 'NO':<6}  {self.load}"
        )


HEADER = (
    f"{'mode':<16} {'prod':>8} {'cons':>8} {'both':>8} {'sent':>9} {'cpu s':>8} {'cpu s':>8} "
    f"{'stored':>9}  intact  load average\n"
    f"{'':<16} {'MB/s':>8} {'MB/s':>8} {'MB/s':>8} {'MB':>9} {'client':>8} {'broker':>8} {'MB (RSS)':>9}"
)


def day_chunks(config: HospitalConfig, days: int) -> list[bytes]:
    """The plain chunk messages of days 1..days (not the closing day messages)."""
    chunks: list[bytes] = []
    for records in iter_days(config, days + 1):
        if records.day > 0:
            chunks += [m for m in encode_day("0" * 32, records, "none") if batch_table(m)]
    return chunks


def _recode(message: bytes, codec: Codec) -> bytes:
    """A plain chunk message as the generator sends it with ``codec``."""
    h = parse_batch_message(message).header
    return chunk_message(h.run_id, h.day, h.seq, h.table, parse_batch_message(message).payload, h.rows, codec)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, mode: str, plain: Sequence[bytes]) -> int:
    """Send the chunks as ``mode`` does (payload modes compress each here); the bytes sent."""
    codec: Codec = "zstd" if mode == "payload-zstd" else "none"
    compression = mode.removeprefix("protocol-") if mode.startswith("protocol-") else None
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=compression,
        max_batch_size=1,  # as the worker's producers on the embedded broker
        max_request_size=2 * 1024 * 1024,
        linger_ms=0,
    )
    await producer.start()
    sent = 0
    try:
        futures = []
        for message in plain:
            value = message if codec == "none" else _recode(message, codec)
            sent += len(value)
            futures.append(await producer.send(TOPIC, value, key=KEY))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def _consume(bootstrap: str, expected: Sequence[bytes]) -> bool:
    """Read every chunk back as the sink does (parsed: decompressed, digest checked); True when
    each one's plain payload is the one sent."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    intact = True
    received = 0
    try:
        while received < len(expected):
            batches = await consumer.getmany(timeout_ms=10_000)
            if not batches:
                raise RuntimeError(f"read {received} of {len(expected)} messages, then nothing for 10 s")
            for records in batches.values():
                for record in records:
                    payload = parse_batch_message(record.value).payload
                    intact &= received < len(expected) and payload == expected[received]
                    received += 1
    finally:
        await consumer.stop()
    return intact and received == len(expected)


def run_mode(base: Path, mode: str, plain: Sequence[bytes], expected: Sequence[bytes]) -> Result:
    """One mode on a broker of its own, so that its memory and CPU are the mode's alone."""
    settings = stack_settings(base / mode)
    stack.up(settings, only=["broker"])
    try:
        pid = stack.status(settings)["broker"].pid
        assert pid is not None
        bootstrap = "{}:{}".format(*settings.kafka_address)
        asyncio.run(_create_topic(bootstrap))
        cpu0, broker_cpu0, rss0 = _own_cpu_seconds(), _cpu_seconds(pid), _rss_bytes(pid)
        result = Result(mode, len(plain), sum(map(len, expected)), 0, 0.0, 0.0, 0.0, 0.0, 0, False)
        try:
            t0 = time.perf_counter()
            result.sent_bytes = asyncio.run(_produce(bootstrap, mode, plain))
            t1 = time.perf_counter()
            result.intact = asyncio.run(_consume(bootstrap, expected))
            result.produce_seconds, result.consume_seconds = t1 - t0, time.perf_counter() - t1
        except Exception as exc:  # a codec the broker refused is a result, not a crash
            result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        result.client_cpu_seconds = _own_cpu_seconds() - cpu0
        result.broker_cpu_seconds = _cpu_seconds(pid) - broker_cpu0
        result.broker_rss_growth = _rss_bytes(pid) - rss0
        result.load = loadavg()
        return result
    finally:
        stack.down(settings, only=["broker"])


def median_result(results: Sequence[Result]) -> Result:
    """The round whose produce + consume time is the median of a mode's rounds."""
    ordered = sorted(results, key=lambda r: (bool(r.error), r.produce_seconds + r.consume_seconds))
    return ordered[(len(ordered) - 1) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=positive_int, default=20, help="days of chunks (1..N; default 20)")
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="rounds of every mode; the median is shown"
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here too")
    add_hospital_arguments(parser)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; expected one of {', '.join(MODES)}")

    config = HospitalConfig.from_settings(hospital_settings(args))
    t0 = time.perf_counter()
    plain = day_chunks(config, args.days)
    expected = [parse_batch_message(m).payload for m in plain]
    print(
        f"bench-broker: {len(plain)} chunks of days 1..{args.days}, {sum(map(len, expected)) / MB:.1f} MB "
        f"of COPY text (simulated in {time.perf_counter() - t0:.1f} s), {args.rounds} rounds per mode "
        f"(the median shown), a fresh embedded broker each; {os.cpu_count()} CPUs, load {loadavg()}",
        flush=True,
    )
    base = traversable_tempdir("hospital-bench-broker-")
    rounds: dict[str, list[Result]] = {mode: [] for mode in modes}
    try:
        for _ in range(args.rounds):  # interleaved, so that a burst of load hits every mode alike
            for mode in modes:
                rounds[mode].append(run_mode(base, mode, plain, expected))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(HEADER)
    results = [median_result(rounds[mode]) for mode in modes]
    for result in results:
        print(result.row())
    print("MB/s are of the plain COPY text; client CPU includes compressing and decompressing")
    if args.json:
        summary = {
            "days": args.days,
            "rounds": {m: [dataclasses.asdict(r) for r in rs] for m, rs in rounds.items()},
        }
        args.json.write_text(to_json(summary))
    return 0 if all(r.intact for rs in rounds.values() for r in rs if not r.error) else 1


if __name__ == "__main__":
    sys.exit(main())
