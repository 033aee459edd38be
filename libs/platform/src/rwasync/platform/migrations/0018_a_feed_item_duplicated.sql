-- Whether the run lists the item's id more than once (valid or not). The feed poller sets it for
-- a run's rows in one pass when staging ends, so that the comparison's passes read a column
-- instead of probing the run's primary key for every row. Rows staged before this migration get
-- it here.
ALTER TABLE feed_run_items ADD COLUMN duplicated boolean NOT NULL DEFAULT false;
UPDATE feed_run_items SET duplicated = true
WHERE (run_id, asset_id) IN (
    SELECT run_id, asset_id FROM feed_run_items GROUP BY run_id, asset_id HAVING count(*) > 1
);
