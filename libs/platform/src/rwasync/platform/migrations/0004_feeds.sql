-- Feed sources and runs, owned by the feed poller; the operator CLI adds sources and requests
-- runs, approvals and rejections by writing here (the poller does the work).
CREATE TABLE feed_sources (
    feed_id                text PRIMARY KEY,
    provider_id            text NOT NULL REFERENCES providers (provider_id),
    url                    text NOT NULL,
    format                 text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'jsonl', 'csv')),
    -- NULL: runs only when triggered.
    interval_seconds       integer CHECK (interval_seconds > 0),
    auth                   jsonb,
    deletion_threshold_percent  numeric NOT NULL DEFAULT 20,
    deletion_threshold_min_count integer NOT NULL DEFAULT 5,
    enabled                boolean NOT NULL DEFAULT true,
    next_run_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_sources_due ON feed_sources (next_run_at) WHERE enabled;

CREATE TABLE feed_runs (
    run_id         text PRIMARY KEY,
    feed_id        text NOT NULL REFERENCES feed_sources (feed_id),
    provider_id    text NOT NULL,
    status         text NOT NULL CHECK (status IN
                     ('queued', 'running', 'ok', 'not_modified', 'held', 'failed', 'rejected')),
    reason         text,
    reason_code    text,
    trigger        text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    compared_at    timestamptz,
    finished_at    timestamptz,
    snapshot_time  timestamptz,
    counts         jsonb NOT NULL DEFAULT
                     '{"seen":0,"created":0,"updated":0,"unchanged":0,"deleted":0,"invalid":0,"held_deletions":0}',
    errors         jsonb NOT NULL DEFAULT '[]',
    bytes          bigint,
    body_sha256    bytea,
    -- A held run keeps the body as fetched (raw bytes) so that `feed approve` can apply that very
    -- snapshot.
    held_body      bytea,
    -- An operator's decision on a held run, waiting for the poller: 'approve' or 'reject'.
    decision       text CHECK (decision IN ('approve', 'reject')),
    claimed_by     text,
    claimed_until  timestamptz
);
CREATE INDEX feed_runs_feed ON feed_runs (feed_id, requested_at DESC);
CREATE INDEX feed_runs_pending ON feed_runs (requested_at) WHERE status IN ('queued', 'running')
    OR decision IS NOT NULL;
