-- A staged item whose price the run did not send although it carried one (the item was older than
-- the stored asset, or its id was also listed by an invalid item). The next run compares its
-- prices with the last run's copies to send only news: a copy whose price was withheld must not
-- count as sent, or the price of the item's next, newer version was never sent at all.
ALTER TABLE feed_run_items ADD COLUMN price_withheld boolean NOT NULL DEFAULT false;
