"""Prometheus metrics of one worker, in a registry of their own (``GET /metrics`` renders it).

The sink records its flushes here as they happen; the gauges that describe PostgreSQL, the
tables and the consumer are set by ``dashboard.py`` just before each scrape. Nothing here
imports the app, so the sink and the unit tests can use it without Kafka.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: the text exposition format ``generate_latest`` writes (Prometheus's classic text format)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds; a flush is one transaction holding up to HOSPITAL_SINK_BUFFER_MESSAGES messages
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: seconds from a streamed transfer's send to where it can be seen, and from a slot's wall-clock
#: time to its send (the real-speed targets: 2 s to PostgreSQL, 0.1 s to the table, 1 s drift)
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0
)  # fmt: skip
#: where a worker's time goes; the stages overlap (the generator runs beside the agents)
STAGES = {
    "generate": "simulate_day and encode_day of the days this worker generated",
    "produce": "sending the generator's messages and awaiting the broker's acknowledgements",
    "route": "the routing agent: batch chunks and live transfers into ward and staff changes",
    "tables": "the two table agents applying ward and staff changes",
    "sink": "storing buffers: parsing, the chunk ledger, COPY and merges, the commit",
}


@dataclasses.dataclass(frozen=True)
class Flush:
    """One buffer the sink stored: when it finished, how long it took and what it held."""

    at: float  # Unix time
    seconds: float
    messages: int
    rows: int
    dead_letters: int


class Metrics:
    """Every metric of the worker, registered in ``self.registry`` (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # the sink, as it stores (counters start at 0 with each worker process)
        self.flush_seconds = Histogram(
            "hospital_sink_flush_seconds",
            "Time the sink took to store one buffer (one transaction)",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.messages_stored = Counter(
            "hospital_sink_messages", "Messages this worker's sink stored", registry=r
        )
        self.rows_stored = Counter(
            "hospital_sink_rows", "Batch rows this worker's sink stored (committed)", registry=r
        )
        self.transfers_streamed = Counter(
            "hospital_sink_streamed_transfers", "Streamed transfers this worker's sink merged", registry=r
        )
        self.dead_letters_written = Counter(
            "hospital_sink_dead_letters", "Dead letters this worker's sink wrote", registry=r
        )
        self.last_flush_timestamp = Gauge(
            "hospital_sink_last_flush_timestamp_seconds", "Unix time the last buffer was stored", registry=r
        )
        self.last_flush_duration = Gauge(
            "hospital_sink_last_flush_duration_seconds", "How long the last buffer took to store", registry=r
        )
        self.buffered_messages = Gauge(
            "hospital_sink_buffered_messages",
            "Messages the sink has consumed but not stored (and so not acknowledged) yet",
            registry=r,
        )
        # the pipeline's stages, counted per message or buffer (never per row)
        self.stage_seconds = Counter(
            "hospital_stage_seconds",
            "Seconds spent per pipeline stage: " + "; ".join(f"{k}: {v}" for k, v in STAGES.items()),
            ["stage"],
            registry=r,
        )
        self.stage_messages = Counter(
            "hospital_stage_messages",
            "Messages (or buffers, for the sink) handled per stage",
            ["stage"],
            registry=r,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage)
            self.stage_messages.labels(stage)
        self.generated_rows = Counter(
            "hospital_generated_rows", "Batch rows the generator simulated and encoded", registry=r
        )
        self.produced_bytes = Counter(
            "hospital_produced_bytes", "Bytes of the batch messages the generator sent", registry=r
        )
        self.stored_bytes = Counter(
            "hospital_sink_bytes", "Bytes of the messages this worker's sink stored (committed)", registry=r
        )
        self.latency = Histogram(
            "hospital_streamed_latency_seconds",
            "From a streamed transfer's send to its commit in PostgreSQL (where=database) or to "
            "its ward's entry in occupancy_by_ward (where=table)",
            ["where"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.slot_lag = Histogram(
            "hospital_schedule_lag_seconds",
            "How late a stream slot (kind=slot) or a day's batch (kind=batch) was sent after its "
            "wall-clock time (not at speed max)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # PostgreSQL, read at scrape time
        self.table_rows = Gauge(
            "hospital_table_rows",
            "Rows per table (PostgreSQL's estimate: live tuples, or reltuples after ANALYZE)",
            ["table"],
            registry=r,
        )
        self.dead_letters = Gauge("hospital_dead_letters", "Dead letters stored in PostgreSQL", registry=r)
        self.dead_letters_open = Gauge(
            "hospital_dead_letters_open", "Dead letters stored in PostgreSQL and not replayed", registry=r
        )
        self.simulated_day = Gauge(
            "hospital_simulated_day",
            "The last complete simulated day (every day up to it fully stored); -1 before day 0",
            registry=r,
        )
        self.schedule_days = Gauge(
            "hospital_schedule_days", "Length of the schedule in simulated days", registry=r
        )
        self.database_up = Gauge(
            "hospital_database_up", "1 if the last scrape could read PostgreSQL, else 0", registry=r
        )
        self.database_size = Gauge(
            "hospital_database_size_bytes", "pg_database_size of the run's database", registry=r
        )
        # the worker's own consumer and tables
        self.consumer_lag = Gauge(
            "hospital_consumer_lag_messages",
            "Messages in an assigned partition that the worker has not committed yet",
            ["topic", "partition"],
            registry=r,
        )
        self.ward_occupied = Gauge(
            "hospital_ward_occupied_beds",
            "Occupied beds per ward now (occupancy_by_ward)",
            ["ward"],
            registry=r,
        )
        self.ward_beds = Gauge("hospital_ward_beds", "Staffed beds per ward", ["ward"], registry=r)
        self.ward_waiting = Gauge(
            "hospital_ward_waiting_for_bed",
            "Streamed arrivals waiting for a bed per ward (occupancy_by_ward)",
            ["ward"],
            registry=r,
        )
        self.last_flush: Flush | None = None
        self.flushes = 0

    def record_flush(
        self,
        seconds: float,
        messages: int,
        rows: int,
        transfers: int,
        dead_letters: int,
        at: float | None = None,
        message_bytes: int = 0,
    ) -> Flush:
        """Count one stored buffer (called by the sink after its transaction committed)."""
        flush = Flush(time.time() if at is None else at, seconds, messages, rows, dead_letters)
        self.flush_seconds.observe(seconds)
        self.messages_stored.inc(messages)
        self.stored_bytes.inc(message_bytes)
        self.stage_seconds.labels("sink").inc(seconds)
        self.stage_messages.labels("sink").inc()
        self.rows_stored.inc(rows)
        self.transfers_streamed.inc(transfers)
        self.dead_letters_written.inc(dead_letters)
        self.last_flush_timestamp.set(flush.at)
        self.last_flush_duration.set(seconds)
        self.last_flush, self.flushes = flush, self.flushes + 1
        return flush

    @contextlib.contextmanager
    def timed(self, stage: str, messages: int = 1) -> Iterator[None]:
        """Count the time the block takes as ``stage`` work on ``messages`` messages."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage).inc(time.perf_counter() - started)
            self.stage_messages.labels(stage).inc(messages)

    def set_wards(self, wards: Iterable[Mapping[str, object]]) -> None:
        """Occupancy gauges from ward views (``code``, ``beds``, ``occupied``, ``waiting_for_bed``);
        a ward whose occupancy is not known (None: the tables are not ready) has none."""
        for gauge in (self.ward_occupied, self.ward_beds, self.ward_waiting):
            gauge.clear()
        for ward in wards:
            label = str(ward["code"])
            self.ward_beds.labels(label).set(float(ward["beds"]))  # type: ignore[arg-type]
            if ward["occupied"] is not None:
                self.ward_occupied.labels(label).set(float(ward["occupied"]))  # type: ignore[arg-type]
                self.ward_waiting.labels(label).set(float(ward["waiting_for_bed"]))  # type: ignore[arg-type]

    def set_consumer_lag(self, partitions: Iterable[Mapping[str, object]]) -> None:
        """Lag gauges from ``{"topic", "partition", "lag"}`` rows (partitions no longer assigned go)."""
        self.consumer_lag.clear()
        for row in partitions:
            self.consumer_lag.labels(str(row["topic"]), str(row["partition"])).set(float(row["lag"]))  # type: ignore[arg-type]

    def set_table_rows(self, rows: Mapping[str, int]) -> None:
        self.table_rows.clear()
        for table, count in rows.items():
            self.table_rows.labels(table).set(count)

    def render(self) -> bytes:
        """The registry in the text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


#: the worker's metrics
METRICS = Metrics()
