-- validate judges a week of simulated days per query (hospital_stream/validate.py). Every table
-- it counts per day already has an index on sim_day but these two:
-- the catchment's patients (5 M rows, nearly all on day 0: a btree deduplicates them to a few MB,
-- and a week's count is an index-only scan)
CREATE INDEX patients_day_idx ON patients (sim_day);
-- the discharges of a week: `rows per day` counts them by the local day of discharged_at
CREATE INDEX admissions_discharged_idx ON admissions (discharged_at);
