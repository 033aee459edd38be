-- Asset state, owned and written only by the reconciler. Other services read it through the
-- `asset_state` view. The version of a row is (updated_at, deleted, accepted_at, event_id),
-- compared as a row value by the guarded upsert (API.md, "Versions").
CREATE TABLE assets (
    provider_id   text NOT NULL,
    asset_id      text NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted       boolean NOT NULL,
    accepted_at   timestamptz NOT NULL,
    event_id      uuid NOT NULL,
    source        text NOT NULL CHECK (source IN ('push', 'batch', 'feed')),
    -- The last applied document and its hash; kept on a tombstone for `include_deleted` reads.
    document      jsonb,
    content_hash  bytea,
    status        text,
    applied_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    PRIMARY KEY (provider_id, asset_id)
);

CREATE VIEW asset_state AS
SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id, source,
       document, content_hash, status, applied_at, deleted_at
FROM assets;
