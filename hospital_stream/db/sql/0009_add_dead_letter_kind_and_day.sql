-- What kind of dead letter a row is and which simulated day it belongs to, as columns, so that
-- nobody reads them out of the prose of `reason` (the dashboard's reconciliation did). The
-- kinds are hospital_stream.wire.dead_letters.DeadLetterKind; the CHECK lists exactly those.
-- sim_day is NULL when the letter has no day (a message that did not parse far enough).
ALTER TABLE dead_letters
    ADD COLUMN kind text NOT NULL DEFAULT 'unclassified'
        CONSTRAINT dead_letters_kind_check CHECK (kind IN (
            'invalid_message', 'bad_row', 'out_of_order', 'unconfirmed_stream', 'agent_rejected',
            'unclassified')),
    ADD COLUMN sim_day integer CONSTRAINT dead_letters_sim_day_check CHECK (sim_day >= 0);

-- The rows stored so far, from what they tell for certain (their reason is parsed here, once).
-- Partition -1: a streamed transfer found unconfirmed when its day closed (migration 0003).
UPDATE dead_letters
SET kind = 'unconfirmed_stream',
    sim_day = substring(reason from 'not in the batch of day ([0-9]+)')::integer
WHERE partition = -1;

-- A row number: one row of a batch chunk that PostgreSQL refused (its day is not recorded).
UPDATE dead_letters SET kind = 'bad_row' WHERE partition <> -1 AND row_number > 0;

-- A chunk refused whole while a chunk before it was missing (sink.postgres.ChunkOutOfOrder).
UPDATE dead_letters
SET kind = 'out_of_order',
    sim_day = substring(reason from '^chunk ([0-9]+)/[0-9]+ .* names rows of chunks not stored yet')::integer
WHERE partition <> -1 AND row_number = 0
  AND reason ~ '^chunk [0-9]+/[0-9]+ .* names rows of chunks not stored yet';

-- Everything else keeps 'unclassified': a message the sink or an agent could not validate,
-- which the old rows do not tell apart. New rows always name their kind: no default.
ALTER TABLE dead_letters ALTER COLUMN kind DROP DEFAULT;

-- the dashboard's reconciliation counts the unconfirmed transfers of a range of days
CREATE INDEX dead_letters_kind_day_idx ON dead_letters (kind, sim_day);
