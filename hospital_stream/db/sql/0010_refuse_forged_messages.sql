-- Forged and malformed messages are refused with a reason of their own (the kinds are
-- hospital_stream.wire.kinds.DeadLetterKind; the CHECK lists exactly those), and the chunk
-- ledger keeps each chunk's BLAKE2b-128 digest, so that a copy of a stored chunk is told apart
-- from a different chunk under the same day and number. Rows stored before have no digest:
-- for them the table and the row count decide.
ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_kind_check,
    ADD CONSTRAINT dead_letters_kind_check CHECK (kind IN (
        'invalid_message', 'bad_row', 'out_of_order', 'unconfirmed_stream', 'agent_rejected',
        'unclassified', 'outside_schedule', 'day_closed', 'conflict', 'unknown_table', 'wrong_run',
        'digest', 'version', 'tombstone', 'bad_key', 'oversized', 'bad_dead_letter'));

ALTER TABLE ingested_chunks ADD COLUMN digest text;
