"""The changelog-backed Faust tables: the hospital's live state."""

from __future__ import annotations

from hospital_stream.app import app, settings

occupancy_by_ward = app.Table(
    "occupancy_by_ward",
    partitions=settings.topic_partitions,
    help="ward id -> beds, the census at the end of the last stored day and the live moves since",
)

assignment_by_staff = app.Table(
    "assignment_by_staff",
    partitions=settings.topic_partitions,
    help="staff id -> role, specialty and current ward assignment (or when it ended)",
)
