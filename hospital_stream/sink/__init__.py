"""The buffered PostgreSQL sink: a service owning its pool, storing each buffer of messages in
one transaction, effectively once."""

from hospital_stream.sink.postgres import Incoming, PostgresSink, RowsMissing, StoreResult, apply_rows

__all__ = ["Incoming", "PostgresSink", "RowsMissing", "StoreResult", "apply_rows"]
