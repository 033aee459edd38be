-- A provider's asset events accepted and not yet decided (nor dead-lettered: those have a
-- reason): what a feed run waits for before comparing, and protects from deletion meanwhile
-- (feed-poller's PUSH_UNDECIDED, the store's PENDING_PUSHES). Small, as the rows leave it once
-- decided; without it each look walked every provider's undecided receipts, price ticks and
-- dead letters included.
CREATE INDEX event_receipts_pending_pushes ON event_receipts (provider_id, accepted_at)
    WHERE status = 'accepted' AND type <> 'price.updated' AND reason IS NULL;
