-- Load near the heap floor (issue 13): each key and reference is guaranteed by the cheapest
-- mechanism that still guarantees it (the choice per table, with its measured cost, is in
-- docs/data-model.md).

-- patients.national_id: a UNIQUE index filled in random order while day 0's catchment (5 M rows)
-- arrives cost most of that COPY. It is built once instead, right after the last of day 0's
-- patients is copied, in the same transaction (the sink calls index_patients_national_id()), and
-- from then on refuses a duplicate as the constraint did. A database that already holds patients
-- keeps the index it has.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM patients) THEN
        ALTER TABLE patients DROP CONSTRAINT patients_national_id_key;
    END IF;
END
$$;

-- the worker's role owns no table, so the index is built as the owner (SECURITY DEFINER)
CREATE FUNCTION index_patients_national_id() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS patients_national_id_key ON patients (national_id);
END
$$;
REVOKE ALL ON FUNCTION index_patients_national_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION index_patients_national_id() TO hospital_writer;

-- diagnoses: no foreign keys, like transfers and the clinical tables (each cost an index probe
-- and a row lock on the parent per COPYed row). The batch partition sends a day's admissions
-- before its diagnoses, and `validate` checks every diagnosis's admission and code once its day
-- is complete ("diagnosis references").
ALTER TABLE diagnoses
    DROP CONSTRAINT diagnoses_admission_id_fkey,
    DROP CONSTRAINT diagnoses_icd10_code_fkey;

-- sim_day indexes of insert-only tables whose rows arrive in day order: BRIN, one page that
-- costs nothing to fill, where a btree took an insertion per row and halved their COPY rate
-- (the clinical tables have had theirs since 0005). `patients` keeps its btree: its one key
-- (day 0) is deduplicated, as cheap to fill as BRIN, and counts a window from the index alone.
-- `admissions` (its discharge updates every row) and `transfers` (merged; the sink counts a
-- day's transfers in every transaction) keep theirs too.
DROP INDEX diagnoses_day_idx;
CREATE INDEX diagnoses_day_brin ON diagnoses USING brin (sim_day);
DROP INDEX bed_requests_day_idx;
CREATE INDEX bed_requests_day_brin ON bed_requests USING brin (sim_day);
