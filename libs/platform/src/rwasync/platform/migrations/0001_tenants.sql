-- Tenants and credentials, owned by the operator CLI (rwasync.platform); read by ingest-api and
-- pricing to authenticate. Secrets are never stored: only SHA-256 digests of generated secrets.
CREATE TABLE providers (
    provider_id      text PRIMARY KEY,
    name             text NOT NULL,
    disabled         boolean NOT NULL DEFAULT false,
    price_freshness  interval NOT NULL DEFAULT interval '24 hours',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provider_credentials (
    key_id         text PRIMARY KEY,
    provider_id    text NOT NULL REFERENCES providers (provider_id),
    secret_digest  bytea NOT NULL,
    token_digest   bytea NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX provider_credentials_provider ON provider_credentials (provider_id);

CREATE TABLE readers (
    reader_id     text PRIMARY KEY,
    name          text NOT NULL,
    token_digest  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- One receipt per accepted event. ingest-api records `accepted` once the broker confirmed; the
-- consumer that decides the event moves it out of `accepted` exactly once, and never again.
CREATE TABLE event_receipts (
    event_id     uuid PRIMARY KEY,
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    type         text NOT NULL CHECK (type IN ('asset.upserted', 'asset.deleted', 'price.updated')),
    status       text NOT NULL CHECK (status IN
                   ('accepted', 'applied', 'stale_ignored', 'duplicate', 'rejected', 'held')),
    reason       text,
    latest       boolean,
    accepted_at  timestamptz NOT NULL,
    decided_at   timestamptz
);
CREATE INDEX event_receipts_undecided ON event_receipts (accepted_at) WHERE status = 'accepted';
