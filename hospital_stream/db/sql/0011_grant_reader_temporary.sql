-- validate's "content equals simulator" stages the simulator's rows in temporary tables (the
-- reader login's own, dropped with its session) to digest them the way the stored rows are: the
-- reader needs TEMPORARY, which a database whose PUBLIC lost it would otherwise refuse.
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO hospital_reader', current_database());
END
$$;
