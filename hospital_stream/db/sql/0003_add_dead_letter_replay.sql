-- What `hospital-stream dlq replay` needs: the message's key (to send it back as it came), the
-- batch table a rejected row belongs to, and when a dead letter was replayed. Partition -1
-- marks a streamed transfer found unconfirmed when its day closed (offset = its transfer id).
ALTER TABLE dead_letters
    ADD COLUMN message_key bytea,
    ADD COLUMN table_name  text,
    ADD COLUMN replayed_at timestamptz;
