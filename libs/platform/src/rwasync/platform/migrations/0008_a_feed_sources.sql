-- Feed sources get cron schedules, sealed credentials (`auth` keeps only the kind and the user or
-- header name; `auth_secret` the Fernet-sealed secret) and a change time for providers'
-- replacements. Runs record the response's validators for conditional requests and the decoded
-- size, and no longer keep the body: a held run's snapshot lives in `feed_run_items`
-- (0008_b), and `staged_items` says it was written completely.
ALTER TABLE feed_sources
    ADD COLUMN cron text,
    ADD COLUMN auth_secret bytea,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT feed_sources_one_schedule CHECK (cron IS NULL OR interval_seconds IS NULL);
CREATE INDEX feed_sources_provider ON feed_sources (provider_id, created_at, feed_id);

ALTER TABLE feed_runs
    ADD COLUMN etag text,
    ADD COLUMN last_modified text,
    ADD COLUMN decoded_bytes bigint,
    ADD COLUMN staged_items integer,
    DROP COLUMN held_body;
