-- The pipeline's own bookkeeping: which run the database holds, which chunks of which day
-- are stored (so a replayed chunk is skipped), each day's manifest and checkpoint, and the
-- messages that could not be stored.

CREATE TABLE simulation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    run_id     text NOT NULL,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ingested_chunks (
    sim_day    integer NOT NULL,
    seq        integer NOT NULL,
    table_name text NOT NULL,
    row_count  integer NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sim_day, seq)
);

CREATE TABLE sim_days (
    sim_day      integer PRIMARY KEY,
    sim_date     date NOT NULL,
    chunks       integer NOT NULL,
    row_counts   jsonb NOT NULL,
    checkpoint   bytea NOT NULL,
    closed_at    timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz  -- set once every chunk of the day is stored
);

CREATE TABLE dead_letters (
    dead_letter_id bigserial PRIMARY KEY,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    row_number     integer NOT NULL DEFAULT 0,  -- 0: the whole message; n: its n-th row
    reason         text NOT NULL,
    payload        bytea NOT NULL,   -- capped; payload_bytes is the original size
    payload_bytes  integer NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset", row_number)
);
