-- The default deletion threshold is a feed rule (rwasync.schema.feeds.DEFAULT_DELETION_THRESHOLD):
-- every registration writes it explicitly, so the table keeps no second copy of it.
ALTER TABLE feed_sources
    ALTER COLUMN deletion_threshold_percent DROP DEFAULT,
    ALTER COLUMN deletion_threshold_min_count DROP DEFAULT;

-- 0004's comment on `held_body` wrongly called the kept bytes "decoded"; the file now says they
-- are the body as fetched. Only a comment changed, so record the corrected file's checksum where
-- the old one was applied (otherwise every `rwasync migrate` would warn that 0004 differs).
UPDATE schema_migrations
SET checksum = '1e53f0634a89ed665fc967e8c6b089dc54f2bc27aeee7aa2699c366b0d227349'
WHERE version = '0004_feeds'
  AND checksum = '14944fb421e7b2935b5435f17d8af41323bcfeac546599b74a33129e577f8e0b';
