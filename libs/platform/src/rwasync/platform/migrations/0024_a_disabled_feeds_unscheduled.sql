-- A disabled feed has no next run: its schedule queues none. `feed disable` used to leave the
-- time it would have run at, which the feed's readers showed, and which `feed enable` then
-- resumed from (a run at once when long past, else a wait until then). Clear those times; a
-- feed enabled again now runs once soon (rwasync.store.feeds.next_run_at).
UPDATE feed_sources SET next_run_at = NULL WHERE NOT enabled AND next_run_at IS NOT NULL;
