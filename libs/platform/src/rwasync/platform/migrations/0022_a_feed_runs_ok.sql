-- A feed's latest `ok` run that staged its items (the poller's fingerprints, the staged items it
-- keeps, and LISTED_BY_ANOTHER_FEED's sibling snapshots) and its latest applied snapshot time
-- (the `stale_snapshot` hold), each one index probe: without them every run read its feeds'
-- whole history of runs, and the sibling lookup every run of every feed.
CREATE INDEX feed_runs_latest_ok ON feed_runs (feed_id, finished_at DESC NULLS LAST)
    WHERE status = 'ok' AND staged_items IS NOT NULL;
CREATE INDEX feed_runs_ok_snapshot ON feed_runs (feed_id, snapshot_time)
    WHERE status = 'ok';
