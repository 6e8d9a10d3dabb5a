-- Clinical records per admission, the bulk of the data: lab results, vital signs, prescriptions
-- and procedures (after MIMIC-IV's labevents, chartevents, prescriptions and procedures_icd),
-- with their reference tables. Rows arrive by the tens of thousands a simulated day through COPY,
-- so the bulk tables carry no foreign keys (each would cost an index probe per row); `validate`
-- checks their references once a day is complete, as it does for transfers. BRIN indexes on
-- sim_day stay tiny because rows are appended in day order.

CREATE TABLE lab_tests (
    test_code text PRIMARY KEY,          -- LOINC code
    name      text NOT NULL,
    specimen  text NOT NULL,
    unit      text NOT NULL,
    ref_low   double precision NOT NULL,
    ref_high  double precision NOT NULL,
    CHECK (ref_low < ref_high)
);

CREATE TABLE medicines (
    medicine_code text PRIMARY KEY,      -- ATC code
    name          text NOT NULL,
    form          text NOT NULL
);

CREATE TABLE procedure_codes (
    procedure_code text PRIMARY KEY,     -- ICD-10-PCS code
    description    text NOT NULL,
    category       text NOT NULL
);

CREATE TABLE lab_results (
    lab_result_id bigint PRIMARY KEY,
    admission_id  bigint NOT NULL,
    patient_id    bigint NOT NULL,
    test_code     text NOT NULL,
    charted_at    timestamptz NOT NULL,
    value         double precision NOT NULL,
    flag          text NOT NULL CHECK (flag IN ('N', 'L', 'H', 'LL', 'HH')),  -- HL7 OBX-8
    sim_day       integer NOT NULL CHECK (sim_day >= 0)
);
CREATE INDEX lab_results_admission_idx ON lab_results (admission_id);
CREATE INDEX lab_results_day_brin ON lab_results USING brin (sim_day);

CREATE TABLE vital_signs (
    vital_sign_id    bigint PRIMARY KEY,
    admission_id     bigint NOT NULL,
    patient_id       bigint NOT NULL,
    ward_id          integer NOT NULL,
    charted_at       timestamptz NOT NULL,
    heart_rate       smallint NOT NULL CHECK (heart_rate BETWEEN 20 AND 250),
    systolic_bp      smallint NOT NULL CHECK (systolic_bp BETWEEN 40 AND 260),
    diastolic_bp     smallint NOT NULL CHECK (diastolic_bp BETWEEN 20 AND 160),
    respiratory_rate smallint NOT NULL CHECK (respiratory_rate BETWEEN 4 AND 60),
    temperature      numeric(3, 1) NOT NULL CHECK (temperature BETWEEN 32 AND 43),
    spo2             smallint NOT NULL CHECK (spo2 BETWEEN 50 AND 100),
    sim_day          integer NOT NULL CHECK (sim_day >= 0),
    CHECK (diastolic_bp < systolic_bp)
);
CREATE INDEX vital_signs_admission_idx ON vital_signs (admission_id);
CREATE INDEX vital_signs_day_brin ON vital_signs USING brin (sim_day);

CREATE TABLE prescriptions (
    prescription_id bigint PRIMARY KEY,
    admission_id    bigint NOT NULL,
    patient_id      bigint NOT NULL,
    medicine_code   text NOT NULL,
    drug            text NOT NULL,       -- as written, like MIMIC's prescriptions.drug
    dose_value      double precision NOT NULL CHECK (dose_value > 0),
    dose_unit       text NOT NULL,
    route           text NOT NULL,
    frequency       text NOT NULL,
    starts_at       timestamptz NOT NULL,
    stops_at        timestamptz NOT NULL,
    sim_day         integer NOT NULL CHECK (sim_day >= 0),
    CHECK (stops_at > starts_at)
);
CREATE INDEX prescriptions_admission_idx ON prescriptions (admission_id);
CREATE INDEX prescriptions_day_brin ON prescriptions USING brin (sim_day);

CREATE TABLE procedures (
    admission_id   bigint NOT NULL,
    seq            integer NOT NULL CHECK (seq >= 1),
    procedure_code text NOT NULL,
    performed_at   timestamptz NOT NULL,
    sim_day        integer NOT NULL CHECK (sim_day >= 0),
    PRIMARY KEY (admission_id, seq)
);
CREATE INDEX procedures_day_brin ON procedures USING brin (sim_day);
