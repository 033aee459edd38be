"""Every SQL statement the reconciler runs of its own. The change feed read that the relay shares
with the portal's catalogue reads lives in `rwasync.store.catalog`; the receipts of folded
assets are recorded through `rwasync.store.receipts`."""

from typing import Final

# The batch's events on the plain path (assets without kept patches), copied in with COPY: one
# table per connection, emptied at every commit. Documents stay text until a row is written, so a
# stale or duplicate event costs no JSON parse.
CREATE_INCOMING: Final = """
CREATE TEMP TABLE IF NOT EXISTS incoming_asset_events (
    provider_id text, asset_id text, updated_at timestamptz, deleted boolean,
    accepted_at timestamptz, event_id uuid, source text, document text, content_hash bytea,
    status text, event_type text, newest boolean, position integer, trace_id text
) ON COMMIT DELETE ROWS
"""

INCOMING_COLUMNS: Final = (
    "provider_id", "asset_id", "updated_at", "deleted", "accepted_at", "event_id", "source",
    "document", "content_hash", "status", "event_type", "newest", "position", "trace_id",
)  # fmt: skip

# The guarded merge of the staged events, their receipts and their change entries, in one statement.
# Only each asset's newest event of the batch (`newest`) is merged; the others are superseded. A
# change is written only when its version (updated_at, deleted, accepted_at, event_id) is greater
# than the stored one; the guard sits in the WHERE of the upsert so no replica can race past it (an
# asset not stored yet is inserted plainly: a replica that stored it meanwhile makes the insert
# fail, not pass). A duplicate (same content hash as the live stored document, or a deletion of a
# deleted asset) writes no document: only its newer version. Every applied change gets its entry in
# `asset_changes` (audit, change feed and outbox). Receipts leave `accepted` once (as
# `rwasync.store.receipts` decides them), with the stale reason `patch_state.stale_reason` words the
# same way. An asset that keeps patches is left alone ('deferred': none of its events is decided
# here) for the folding path. Returns the outcome counts per event type, how many classified writes
# did not happen (always 0 under the batch's advisory locks; anything else fails the batch), and one
# row per deferred asset.
APPLY_INCOMING: Final = """
WITH decided AS (
    SELECT i.*,
           CASE
               WHEN a.asset_id IS NULL THEN 'applied'
               WHEN a.patch_state IS NOT NULL THEN 'deferred'
               WHEN (i.updated_at, i.deleted, i.accepted_at, i.event_id)
                    <= (a.updated_at, a.deleted, a.accepted_at, a.event_id) THEN 'stale_ignored'
               WHEN NOT i.deleted AND NOT a.deleted AND i.content_hash = a.content_hash
                   THEN 'duplicate'
               -- deleting what is deleted already: only the tombstone's version moves on
               WHEN i.deleted AND a.deleted THEN 'duplicate'
               ELSE 'applied'
           END AS outcome,
           a.asset_id IS NOT NULL AS stored,
           a.updated_at AS stored_updated_at,
           CASE WHEN NOT a.deleted THEN a.content_hash END AS before_hash
    FROM incoming_asset_events i
    LEFT JOIN assets a ON a.provider_id = i.provider_id AND a.asset_id = i.asset_id
    WHERE i.newest
),
-- An asset stored for the first time is a plain INSERT: no stored version to guard against, and
-- ON CONFLICT's speculative insertion (a probe of the primary key before, a confirmation record
-- after) cost ~5 µs per fresh event. Under the batch's stripes no one else can insert it; if one
-- did, the unique violation fails the batch, and the consumer's retry classifies it as stored.
inserted AS (
    INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                        source, document, content_hash, status, applied_at, deleted_at)
    SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
           source, document::jsonb, content_hash, status,
           now(), CASE WHEN deleted THEN updated_at END
    FROM decided
    WHERE outcome = 'applied' AND NOT stored
    RETURNING event_id
),
-- A stored asset: the guarded upsert.
upserted AS (
    INSERT INTO assets AS a (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                             source, document, content_hash, status, applied_at, deleted_at)
    SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
           source, CASE WHEN outcome = 'applied' THEN document::jsonb END, content_hash, status,
           now(), CASE WHEN deleted THEN updated_at END
    FROM decided
    WHERE outcome IN ('applied', 'duplicate') AND stored
    ON CONFLICT (provider_id, asset_id) DO UPDATE SET
        updated_at = EXCLUDED.updated_at,
        deleted = EXCLUDED.deleted,
        accepted_at = EXCLUDED.accepted_at,
        event_id = EXCLUDED.event_id,
        source = EXCLUDED.source,
        -- A tombstone keeps the last document (for include_deleted reads); a duplicate keeps it.
        document = CASE WHEN EXCLUDED.deleted
                          OR (NOT a.deleted AND a.content_hash = EXCLUDED.content_hash)
                        THEN a.document ELSE EXCLUDED.document END,
        content_hash = CASE WHEN EXCLUDED.deleted THEN a.content_hash
                            ELSE EXCLUDED.content_hash END,
        status = CASE WHEN EXCLUDED.deleted THEN a.status ELSE EXCLUDED.status END,
        applied_at = CASE WHEN (NOT EXCLUDED.deleted AND NOT a.deleted
                                AND a.content_hash = EXCLUDED.content_hash)
                               OR (EXCLUDED.deleted AND a.deleted)
                          THEN a.applied_at ELSE now() END,
        deleted_at = CASE WHEN EXCLUDED.deleted AND a.deleted THEN a.deleted_at
                          ELSE EXCLUDED.deleted_at END
    WHERE (EXCLUDED.updated_at, EXCLUDED.deleted, EXCLUDED.accepted_at, EXCLUDED.event_id)
          > (a.updated_at, a.deleted, a.accepted_at, a.event_id)
      AND a.patch_state IS NULL
    RETURNING a.event_id
),
written AS (SELECT event_id FROM inserted UNION ALL SELECT event_id FROM upserted),
changes AS (
    INSERT INTO asset_changes (event_id, event_type, source, provider_id, asset_id, updated_at,
                               deleted, before_hash, after_hash)
    SELECT d.event_id, d.event_type, d.source, d.provider_id, d.asset_id, d.updated_at,
           d.deleted, d.before_hash, CASE WHEN NOT d.deleted THEN d.content_hash END
    FROM decided d JOIN written w ON w.event_id = d.event_id
    WHERE d.outcome = 'applied'
    ORDER BY d.position  -- entries in the batch's order
),
outcomes AS (
    SELECT d.event_id, d.event_type, d.provider_id, d.asset_id, d.accepted_at, d.outcome,
           d.trace_id,
           CASE WHEN d.outcome = 'stale_ignored' THEN
               format('a newer or equal version is stored (updated_at %s)',
                      to_char(d.stored_updated_at AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
           END AS reason,
           d.outcome IN ('applied', 'duplicate') AND w.event_id IS NULL AS unwritten
    FROM decided d LEFT JOIN written w ON w.event_id = d.event_id
    WHERE d.outcome <> 'deferred'
    UNION ALL
    SELECT s.event_id, s.event_type, s.provider_id, s.asset_id, s.accepted_at, 'stale_ignored',
           s.trace_id, 'superseded by a newer change of the asset applied with it', false
    FROM incoming_asset_events s
    WHERE NOT s.newest
      AND NOT EXISTS (SELECT 1 FROM decided d WHERE d.outcome = 'deferred'
                      AND d.provider_id = s.provider_id AND d.asset_id = s.asset_id)
),
-- Receipts leave `accepted` by a plain UPDATE: no ON CONFLICT, which locks (and so writes) each
-- row before its WHERE is checked, and no write at all to a receipt decided before (a re-delivery
-- writes nothing). Receipts are found with `= ANY (ARRAY(...))`, which the planner estimates at a
-- handful of rows and so probes the primary key for each: a join with the batch (whose temp
-- table has no statistics) was planned as a sequential scan of every receipt ever recorded.
decided_receipts AS (
    UPDATE event_receipts r
    SET status = o.outcome, reason = o.reason, latest = NULL, decided_at = now(),
        trace_id = coalesce(r.trace_id, nullif(o.trace_id, ''))
    FROM outcomes o
    WHERE r.event_id = ANY (ARRAY(SELECT event_id FROM outcomes))
      -- A parameter, not the constant: the partial index of undecided receipts is then never
      -- AND-ed with the primary key. Before statistics catch up with a backlog the planner
      -- guesses it small, and it scanned all of it (100,000 entries: 2 ms, the update 14 ms
      -- instead of 4 per batch of 500).
      AND r.event_id = o.event_id AND r.status = (SELECT 'accepted'::text)
    RETURNING r.event_id
),
-- The batch's events whose receipt that did not decide: decided before (a re-delivery), or not
-- recorded yet (the consumer may decide an event before ingest-api records its `accepted`).
undecided_here AS (
    SELECT event_id FROM outcomes EXCEPT SELECT event_id FROM decided_receipts
),
-- Those without any receipt get theirs (ingest-api's insert then finds the row and leaves it);
-- one recorded meanwhile is decided by ON CONFLICT, as `rwasync.store.receipts` decides.
unrecorded_receipts AS (
    INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, reason,
                                accepted_at, decided_at, trace_id)
    SELECT event_id, provider_id, asset_id, event_type, outcome, reason, accepted_at, now(),
           nullif(trace_id, '')
    FROM outcomes o
    WHERE o.event_id IN (
        SELECT event_id FROM undecided_here
        EXCEPT
        SELECT r.event_id FROM event_receipts r
        WHERE r.event_id = ANY (ARRAY(SELECT event_id FROM undecided_here)))
    ON CONFLICT (event_id) DO UPDATE
        SET status = EXCLUDED.status, reason = EXCLUDED.reason, latest = NULL,
            decided_at = EXCLUDED.decided_at,
            trace_id = coalesce(event_receipts.trace_id, EXCLUDED.trace_id)
        WHERE event_receipts.status = 'accepted'
)
SELECT event_type, outcome, count(*) AS events, count(*) FILTER (WHERE unwritten) AS unwritten,
       NULL AS provider_id, NULL AS asset_id
FROM outcomes GROUP BY event_type, outcome
UNION ALL
SELECT NULL, 'deferred', 0, 0, provider_id, asset_id FROM decided WHERE outcome = 'deferred'
"""

# The stored rows of the assets whose changes are folded, locked until the transaction ends.
LOCK_STORED_ASSETS: Final = """
SELECT a.provider_id, a.asset_id, a.updated_at, a.deleted, a.accepted_at, a.event_id, a.source,
       a.document, encode(a.content_hash, 'hex') AS content_hash, a.patch_state
FROM assets a
JOIN unnest($1::text[], $2::text[]) AS k(provider_id, asset_id)
  ON a.provider_id = k.provider_id AND a.asset_id = k.asset_id
FOR UPDATE OF a
"""

# Events of this batch whose receipts were decided before (a redelivered patch is a no-op).
DECIDED_EVENTS: Final = """
SELECT event_id FROM event_receipts WHERE event_id = ANY($1::uuid[]) AND status <> 'accepted'
"""

# Rows computed by folding, written as they are (the rows are locked and were read in this
# transaction). `applied_at` moves only when the document changed: '-infinity' means "keep".
WRITE_FOLDED_ASSETS: Final = """
INSERT INTO assets AS a (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                         source, document, content_hash, status, applied_at, deleted_at,
                         patch_state)
SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id, source, document,
       decode(content_hash, 'hex'), document ->> 'status',
       CASE WHEN touched THEN now() ELSE '-infinity' END,
       CASE WHEN deleted THEN updated_at END, patch_state
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[], $5::timestamptz[],
            $6::uuid[], $7::text[], $8::jsonb[], $9::text[], $10::boolean[], $11::jsonb[])
     AS w(provider_id, asset_id, updated_at, deleted, accepted_at, event_id, source, document,
          content_hash, touched, patch_state)
ON CONFLICT (provider_id, asset_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at,
    deleted = EXCLUDED.deleted,
    accepted_at = EXCLUDED.accepted_at,
    event_id = EXCLUDED.event_id,
    source = EXCLUDED.source,
    document = EXCLUDED.document,
    content_hash = EXCLUDED.content_hash,
    status = EXCLUDED.status,
    applied_at = CASE WHEN EXCLUDED.applied_at = '-infinity' THEN a.applied_at
                      ELSE EXCLUDED.applied_at END,
    deleted_at = CASE WHEN EXCLUDED.deleted AND a.deleted THEN a.deleted_at
                      ELSE EXCLUDED.deleted_at END,
    patch_state = EXCLUDED.patch_state
"""

# Entries of changes applied by folding (the merge above writes its own).
RECORD_CHANGES: Final = """
INSERT INTO asset_changes (event_id, event_type, source, provider_id, asset_id, updated_at,
                           deleted, before_hash, after_hash)
SELECT e, t, s, p, a, u, d, decode(b, 'hex'), decode(h, 'hex')
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::boolean[], $8::text[], $9::text[]) AS c(e, t, s, p, a, u, d, b, h)
"""

# --- the outbox relay ----------------------------------------------------------------------

RELAY_POSITION: Final = "SELECT xid::text AS xid, change_id FROM change_relays WHERE name = $1"

# Advance the relay's mark (never backwards, whatever a slower former holder writes).
MARK_RELAYED: Final = """
UPDATE change_relays SET xid = $2::text::xid8, change_id = $3, updated_at = now()
WHERE name = $1 AND (xid, change_id) < ($2::text::xid8, $3)
"""

# --- retention -------------------------------------------------------------------------------

# Remove up to $3 of the oldest entries: those applied before $1 that precede every younger entry
# and that the relay $2 has published. Returns how many, and the newest position removed.
PRUNE_CHANGES: Final = """
WITH relayed AS (SELECT xid, change_id FROM change_relays WHERE name = $2),
young AS (
    SELECT xid, change_id FROM asset_changes WHERE applied_at >= $1
    ORDER BY xid, change_id LIMIT 1
),
doomed AS (
    SELECT c.xid, c.change_id
    FROM asset_changes c, relayed r
    WHERE (c.xid, c.change_id) <= (r.xid, r.change_id)
      AND NOT EXISTS (SELECT 1 FROM young y WHERE (c.xid, c.change_id) >= (y.xid, y.change_id))
    ORDER BY c.xid, c.change_id
    LIMIT $3
),
removed AS (
    DELETE FROM asset_changes c USING doomed d
    WHERE c.xid = d.xid AND c.change_id = d.change_id
    RETURNING c.xid, c.change_id
)
SELECT count(*) OVER () AS removed, xid::text AS xid, change_id
FROM removed ORDER BY xid DESC, change_id DESC LIMIT 1
"""

MOVE_HORIZON: Final = """
UPDATE asset_changes_horizon SET xid = $1::text::xid8, change_id = $2, pruned_at = now()
WHERE (xid, change_id) < ($1::text::xid8, $2)
"""
