-- `rwasync status` reads the latest runs of all feeds and the last day's runs by status.
CREATE INDEX feed_runs_recent ON feed_runs (requested_at DESC);
