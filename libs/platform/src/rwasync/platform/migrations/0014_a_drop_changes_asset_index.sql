-- `asset_changes` is read only in (xid, change_id) order (the change feed, the outbox relay,
-- retention), never by asset: the (provider_id, asset_id) index cost every applied event a
-- second text-keyed B-tree insertion (about 4 µs of Postgres CPU per fresh event,
-- docs/performance.md) for no reader. A per-asset history read would bring it back with the read.
DROP INDEX IF EXISTS asset_changes_asset;
