-- The base that an asset's kept merge patches apply onto (`patch_state`; every column NULL when
-- the row is its own base), for the feed poller's comparison: an item newer than the base but
-- older than a patch above it becomes the new base under the patch, as a push does, where the
-- comparison took it for stale by the patch's version and the change was lost.
CREATE OR REPLACE VIEW asset_state AS
SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id, source,
       document, content_hash, status, applied_at, deleted_at,
       (patch_state->'base'->>'updated_at')::timestamptz AS base_updated_at,
       (patch_state->'base'->>'deleted')::boolean AS base_deleted,
       (patch_state->'base'->>'accepted_at')::timestamptz AS base_accepted_at,
       patch_state->'base'->>'event_id' AS base_event_id,
       decode(patch_state->'base'->>'content_hash', 'hex') AS base_content_hash
FROM assets;
