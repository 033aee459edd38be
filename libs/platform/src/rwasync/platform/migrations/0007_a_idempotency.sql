-- Idempotency keys of the provider API (ingest-api): the first request with a key claims it
-- before publishing, and stores its answer once accepted; a repeat with the same body gets that
-- answer again. A claim whose request failed is released (deleted); one left behind by a process
-- that died is taken over after a lease. Rows are pruned after the retention period (>= 24 h).
CREATE TABLE idempotency_keys (
    provider_id      text NOT NULL,
    idempotency_key  text NOT NULL,
    -- SHA-256 of the method, path and body: the same key with another request is refused.
    fingerprint      bytea NOT NULL,
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    -- The first answer, once there is one (NULL while the first request is still in flight).
    status           integer,
    body             bytea,
    location         text,
    answered_at      timestamptz,
    PRIMARY KEY (provider_id, idempotency_key)
);
CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at);
