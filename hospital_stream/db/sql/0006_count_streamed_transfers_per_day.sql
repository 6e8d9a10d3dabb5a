-- How many of a day's transfers were streamed live. A day is complete only once they are all
-- stored too (sink.COMPLETE_DAYS): the live copies travel on other partitions than the day's
-- batch and may be read after it. Days stored before this migration streamed theirs already.
ALTER TABLE sim_days ADD COLUMN streamed integer NOT NULL DEFAULT 0 CHECK (streamed >= 0);
