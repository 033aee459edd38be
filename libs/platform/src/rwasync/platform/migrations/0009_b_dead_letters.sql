-- Dead letters moved out of the `.dlq` queues, so operators can list, show, replay and purge them
-- (`rwasync dlq`). A row exists until it is replayed (published again with a confirm) or purged.
CREATE TABLE dead_letters (
    message_id        text PRIMARY KEY,
    queue             text NOT NULL,
    body              bytea NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}',
    event_ids         uuid[] NOT NULL DEFAULT '{}',
    event_types       text[] NOT NULL DEFAULT '{}',
    provider_id       text,
    reason            text NOT NULL,
    deliveries        integer,
    dead_lettered_at  timestamptz NOT NULL,
    collected_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_order ON dead_letters (dead_lettered_at, message_id);
