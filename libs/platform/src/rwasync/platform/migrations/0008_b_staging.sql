-- A feed run's snapshot: one row per item read (valid, or invalid but carrying an id), written
-- with COPY while the feed is read. A held run keeps it until an operator decides; the latest
-- `ok` run keeps it so the next run can recognise unchanged items by fingerprint (the row then
-- carries no document: the stored asset has the same content hash). Owned by the feed poller.
CREATE TABLE feed_run_items (
    run_id          text NOT NULL,
    asset_id        text NOT NULL,
    item_index      integer NOT NULL,
    valid           boolean NOT NULL,
    fingerprint     bytea,
    updated_at      timestamptz,
    content_hash    bytea,
    -- The normalised document as canonical JSON; NULL for an item unchanged since the last run.
    document        bytea,
    price_amount    numeric,
    price_currency  text,
    price_as_of     timestamptz,
    PRIMARY KEY (run_id, asset_id, item_index)
);
CREATE INDEX feed_run_items_fingerprint ON feed_run_items (run_id, fingerprint) WHERE valid;
