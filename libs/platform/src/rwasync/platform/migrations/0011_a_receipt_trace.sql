-- The trace an event was accepted under (the caller's `traceparent`, else its `X-Request-Id`, else
-- one made up; a feed item: its run's id), shown on its receipt so an operator can find the
-- request's and the consumer's log lines. Null for receipts written before it was recorded.
ALTER TABLE event_receipts ADD COLUMN trace_id text;
