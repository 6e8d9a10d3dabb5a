-- The hospital's records, in simulated time. Every row carries the simulated day (sim_day)
-- that produced it, so per-day counts can be checked against the simulator's manifest.

CREATE TABLE icd10_codes (
    icd10_code  text PRIMARY KEY,
    description text NOT NULL,
    category    text NOT NULL
);

CREATE TABLE wards (
    ward_id   integer PRIMARY KEY,
    code      text NOT NULL UNIQUE,
    name      text NOT NULL,
    specialty text NOT NULL,
    beds      integer NOT NULL CHECK (beds > 0),
    sim_day   integer NOT NULL CHECK (sim_day >= 0)
);

CREATE TABLE patients (
    patient_id  bigint PRIMARY KEY,
    national_id char(13) NOT NULL UNIQUE CHECK (national_id ~ '^[0-9]{13}$'),
    first_name  text NOT NULL,
    last_name   text NOT NULL,
    sex         char(1) NOT NULL CHECK (sex IN ('F', 'M')),
    birth_date  date NOT NULL,
    address     text NOT NULL,
    city        text NOT NULL,
    postal_code text NOT NULL,
    sim_day     integer NOT NULL CHECK (sim_day >= 0)
);

CREATE TABLE staff (
    staff_id   bigint PRIMARY KEY,
    role       text NOT NULL CHECK (role IN ('doctor', 'nurse', 'allied', 'support')),
    specialty  text NOT NULL,
    first_name text NOT NULL,
    last_name  text NOT NULL,
    birth_date date NOT NULL,
    hired_on   date NOT NULL,
    retired_on date,
    sim_day    integer NOT NULL CHECK (sim_day >= 0),
    CHECK (retired_on IS NULL OR retired_on >= hired_on)
);

CREATE TABLE staff_assignments (
    assignment_id bigint PRIMARY KEY,
    staff_id      bigint NOT NULL REFERENCES staff,
    ward_id       integer NOT NULL REFERENCES wards,
    shift         text NOT NULL CHECK (shift IN ('day', 'night')),
    starts_on     date NOT NULL,
    ends_on       date,  -- last day worked (inclusive); NULL while current
    sim_day       integer NOT NULL CHECK (sim_day >= 0),
    CHECK (ends_on IS NULL OR ends_on >= starts_on - 1)
);
CREATE INDEX staff_assignments_staff_idx ON staff_assignments (staff_id);
CREATE INDEX staff_assignments_current_idx ON staff_assignments (ward_id) WHERE ends_on IS NULL;

CREATE TABLE bed_requests (
    request_id     bigint PRIMARY KEY,
    patient_id     bigint NOT NULL REFERENCES patients,
    ward_id        integer NOT NULL REFERENCES wards,
    requested_at   timestamptz NOT NULL,
    admission_type text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('admitted', 'diverted', 'postponed')),
    sim_day        integer NOT NULL CHECK (sim_day >= 0)
);
CREATE INDEX bed_requests_day_idx ON bed_requests (sim_day);

CREATE TABLE admissions (
    admission_id       bigint PRIMARY KEY,
    patient_id         bigint NOT NULL REFERENCES patients,
    ward_id            integer NOT NULL REFERENCES wards,  -- the admitting ward
    admitted_at        timestamptz NOT NULL,
    admission_type     text NOT NULL,
    admission_location text NOT NULL,
    discharged_at      timestamptz,
    discharge_location text,
    died_at            timestamptz,
    sim_day            integer NOT NULL CHECK (sim_day >= 0),
    CHECK (discharged_at IS NULL OR discharged_at > admitted_at),
    CHECK (died_at IS NULL OR (discharged_at IS NOT NULL AND died_at <= discharged_at)),
    CHECK ((discharge_location = 'DIED') = (died_at IS NOT NULL))
);
CREATE INDEX admissions_patient_idx ON admissions (patient_id);
CREATE INDEX admissions_day_idx ON admissions (sim_day);

-- HL7-style ADT events (A01 admit, A02 transfer, A03 discharge). No foreign keys here on
-- purpose: a streamed transfer may arrive before the day's batch that holds its admission,
-- so `validate` checks these references once each day is complete.
CREATE TABLE transfers (
    transfer_id     bigint PRIMARY KEY,
    admission_id    bigint NOT NULL,
    patient_id      bigint NOT NULL,
    event_type      text NOT NULL CHECK (event_type IN ('admit', 'transfer', 'discharge')),
    from_ward_id    integer,
    to_ward_id      integer,
    transferred_at  timestamptz NOT NULL,
    sim_day         integer NOT NULL CHECK (sim_day >= 0),
    seen_in_stream  boolean NOT NULL DEFAULT false,
    seen_in_batch   boolean NOT NULL DEFAULT false,
    -- false when the streamed copy differed from the batch (the batch's fields are kept)
    stream_matches_batch boolean,
    CHECK (from_ward_id IS DISTINCT FROM to_ward_id),
    CHECK ((event_type = 'admit') = (from_ward_id IS NULL)),
    CHECK ((event_type = 'discharge') = (to_ward_id IS NULL))
);
CREATE INDEX transfers_admission_idx ON transfers (admission_id);
CREATE INDEX transfers_day_idx ON transfers (sim_day);

CREATE TABLE diagnoses (
    admission_id bigint NOT NULL REFERENCES admissions,
    seq          integer NOT NULL CHECK (seq >= 1),
    icd10_code   text NOT NULL REFERENCES icd10_codes,
    sim_day      integer NOT NULL CHECK (sim_day >= 0),
    PRIMARY KEY (admission_id, seq)
);
CREATE INDEX diagnoses_day_idx ON diagnoses (sim_day);

-- End-of-day occupancy per ward as the worker's Faust table saw it (for `validate`). It comes
-- from another topic than the wards themselves, so `validate` checks its ward reference.
CREATE TABLE ward_census (
    sim_day  integer NOT NULL,
    ward_id  integer NOT NULL,
    occupied integer NOT NULL CHECK (occupied >= 0),
    PRIMARY KEY (sim_day, ward_id)
);
