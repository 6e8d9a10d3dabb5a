"""The deterministic hospital: ``(seed, config, state, day) -> records``, with no I/O and no
wall clock. It imports neither Faust nor psycopg.

========================  ===========================================================
``config``                services, wards planned from demand, calibration constants
``calendar``              the hospital's time zone and clock helpers
``population``            the catchment: age pyramid, names, valid SA ID numbers
``state``                 inpatients, staff and presence carried from day to day
``checkpoint``            that state as bytes and back
``hospital``              one simulated day: arrivals, stays, staff, ADT events
``clinical``              labs, vital signs, prescriptions and procedures as columns
``columns``               NumPy columns rendered straight to COPY text
``reference``             the code catalogues shipped in ``data/``
========================  ===========================================================
"""

from hospital_stream.model.checkpoint import decode_checkpoint, encode_checkpoint
from hospital_stream.model.config import (
    ADMISSION_TYPES,
    CHUNK_ROWS,
    PATIENT_COLUMNS,
    POPULATION_BLOCK,
    RETIREMENT_AGE,
    SPECIALTIES,
    STAFF_PER_BED,
    STREAM_SLOTS_PER_DAY,
    TRANSFERS_PER_SLOT,
    HospitalConfig,
    HospitalContext,
    Ward,
)
from hospital_stream.model.hospital import DayRecords, Hospital, collection_paused, iter_days, make_id
from hospital_stream.model.population import Population, PopulationColumns, is_valid_national_id
from hospital_stream.model.state import HospitalState, Inpatient, StaffMember

__all__ = [
    "ADMISSION_TYPES",
    "CHUNK_ROWS",
    "PATIENT_COLUMNS",
    "POPULATION_BLOCK",
    "RETIREMENT_AGE",
    "SPECIALTIES",
    "STAFF_PER_BED",
    "STREAM_SLOTS_PER_DAY",
    "TRANSFERS_PER_SLOT",
    "DayRecords",
    "Hospital",
    "HospitalConfig",
    "HospitalContext",
    "HospitalState",
    "Inpatient",
    "Population",
    "PopulationColumns",
    "StaffMember",
    "Ward",
    "collection_paused",
    "decode_checkpoint",
    "encode_checkpoint",
    "is_valid_national_id",
    "iter_days",
    "make_id",
]
