"""Standard exports, streamed in bounded memory: CSV and Parquet files per table, and FHIR R4
bulk-data NDJSON files per resource type.

Everything is read in one read-only REPEATABLE READ transaction, so every file of an export
shows the same moment of the database while a worker keeps writing. Only SELECT and COPY ... TO
STDOUT are used, so the ``hospital_reader`` role is enough.

- CSV: ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)`` written block by block.
- Parquet: the same COPY (without header) parsed by pyarrow's streaming CSV reader with the
  column types taken from the catalog; each block of about 8 MB of CSV becomes one row group.
- FHIR: a server-side cursor per source query, each row built into plain dicts and written as
  one JSON line (FHIR's Bulk Data format). The FHIR model libraries are used only by the tests.

Timestamps are written in SAST (+02:00, the hospital's time) in CSV and FHIR, and as UTC
instants (timestamp[us, tz=UTC]) in Parquet.

The package, one module per job: ``options`` (what is asked for, the plan), ``context`` (the
snapshot's connection, date filters and SQL helpers every exporter shares), ``tabular`` (CSV and
Parquet), ``fhir`` (the FHIR resources and their files), ``progress`` (the console's progress
and each file's summary) and ``snapshot`` (``run``: one export in one snapshot).
"""

from hospital_stream.tools.export.fhir import OBSERVATIONS_PER_VITAL_SIGNS
from hospital_stream.tools.export.options import (
    EXPORT_TABLES,
    FORMATS,
    RESOURCE_TYPES,
    DateRange,
    ExportPlan,
    parse_date,
    parse_format,
    parse_names,
    parse_range,
    plan,
    prepare_out_dir,
)
from hospital_stream.tools.export.progress import ConsoleProgress, Progress, Written
from hospital_stream.tools.export.snapshot import run

__all__ = [
    "EXPORT_TABLES",
    "FORMATS",
    "OBSERVATIONS_PER_VITAL_SIGNS",
    "RESOURCE_TYPES",
    "ConsoleProgress",
    "DateRange",
    "ExportPlan",
    "Progress",
    "Written",
    "parse_date",
    "parse_format",
    "parse_names",
    "parse_range",
    "plan",
    "prepare_out_dir",
    "run",
]
