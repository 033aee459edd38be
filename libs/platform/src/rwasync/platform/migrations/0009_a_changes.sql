-- What the reconciler applied, when, and in which order: the append-only audit of applied changes,
-- which is also the portal's change feed and the outbox of `asset.changed` (docs/architecture.md,
-- "Changes: audit, outbox and feed").
--
-- Every entry is written in the transaction that applied its change and carries that
-- transaction's id (`xid`). Entries are read in (xid, change_id) order, and only those whose
-- transaction id lies below the reader's snapshot xmin: every transaction that could still add an
-- entry before them has ended, so a cursor never skips an entry that commits late.
CREATE TABLE asset_changes (
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    change_id    bigint GENERATED ALWAYS AS IDENTITY,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    source       text NOT NULL CHECK (source IN ('push', 'batch', 'feed')),
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    -- The stored state after the change: its version time, whether deleted, its document's hash
    -- (NULL when deleted), and the live document's hash before it (NULL when there was none).
    updated_at   timestamptz NOT NULL,
    deleted      boolean NOT NULL,
    before_hash  bytea,
    after_hash   bytea,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, change_id)
);
CREATE INDEX asset_changes_asset ON asset_changes (provider_id, asset_id);

-- Entries are never changed; only retention removes the oldest ones.
CREATE FUNCTION asset_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'asset_changes is append-only';
END $$;
CREATE TRIGGER asset_changes_append_only BEFORE UPDATE ON asset_changes
    FOR EACH ROW EXECUTE FUNCTION asset_changes_append_only();

-- How far retention removed entries: a cursor before this position has lost entries (410 Gone).
CREATE TABLE asset_changes_horizon (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    xid        xid8 NOT NULL,
    change_id  bigint NOT NULL,
    pruned_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO asset_changes_horizon (xid, change_id) VALUES ('0', 0);

-- The outbox relay's mark: every entry up to (xid, change_id) was published with a confirm.
CREATE TABLE change_relays (
    name        text PRIMARY KEY,
    xid         xid8 NOT NULL,
    change_id   bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO change_relays (name, xid, change_id) VALUES ('asset.changed', '0', 0);
