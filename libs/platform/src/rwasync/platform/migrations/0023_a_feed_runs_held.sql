-- Held feed runs, for `rwasync status` (a held run waits for an operator): one index entry per
-- held run, however many runs the feeds keep.
CREATE INDEX feed_runs_held ON feed_runs (feed_id, requested_at DESC) WHERE status = 'held';
