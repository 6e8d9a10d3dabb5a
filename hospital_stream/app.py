"""The Faust application. ``faust -A hospital_stream.app worker -l info`` runs it."""

from __future__ import annotations

import faust

from hospital_stream import failpoints
from hospital_stream.settings import Settings

settings = Settings.from_env()
# with the settings, not in a service: the first rebalance comes before the app's services start
failpoints.arm(settings.failpoint, settings.failpoint_log)


def _broker_settings(settings: Settings) -> dict[str, object]:
    """Settings that keep the embedded Tansu broker out of its known defects.

    See docs/architecture.md, the embedded broker: a short session timeout (Tansu holds
    JoinGroup for half of it), one message per producer batch (its ListOffsets would make table
    recovery stop early), and no standby replicas.
    """
    if not settings.embedded:
        return {"broker_session_timeout": 30.0}
    return {
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 2.0,
        "producer_max_batch_size": 1,
        "table_standby_replicas": 0,
    }


app = faust.App(
    settings.app_id,
    broker=settings.kafka_url,
    store="memory://",
    autodiscover=[
        "hospital_stream.agents",
        "hospital_stream.web.views",
        "hospital_stream.web.dashboard",
        "hospital_stream.web.dashboard_views",
    ],
    origin="hospital_stream",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    processing_guarantee="at_least_once",
    # Do not wait for buffered, unacknowledged events at shutdown or rebalance: they were not
    # committed, so they are read again (and the sink skips what it already stored).
    stream_wait_empty=False,
    # A batch message carries up to ~1 MB of rows; fetch many per request.
    consumer_max_fetch_size=32 * 1024 * 1024,
    producer_max_request_size=2 * 1024 * 1024,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    # web_host is the address other workers are sent to; 0.0.0.0 only makes sense to bind.
    **({"web_host": settings.web_host} if settings.web_host != "0.0.0.0" else {}),  # type: ignore[arg-type]
    datadir=str(settings.home / "faust"),
    **_broker_settings(settings),  # type: ignore[arg-type]
)
