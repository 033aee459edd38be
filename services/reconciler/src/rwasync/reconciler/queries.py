"""Every SQL statement the reconciler runs."""

# The guarded merge: one row per asset (the batch's newest version of it). A change is written
# only when its version (updated_at, deleted, accepted_at, event_id) is greater than the stored
# one; the guard sits in the WHERE of the upsert so no replica can race past it. A duplicate (same
# content hash as the live stored document) writes no document: only its newer version.
APPLY_ASSET_CHANGES = """
WITH incoming AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[], $5::timestamptz[],
                $6::uuid[], $7::text[], $8::jsonb[], $9::bytea[], $10::text[])
         AS i(provider_id, asset_id, updated_at, deleted, accepted_at,
              event_id, source, document, content_hash, status)
),
decided AS (
    SELECT i.*,
           CASE
               WHEN a.asset_id IS NULL THEN 'applied'
               WHEN (i.updated_at, i.deleted, i.accepted_at, i.event_id)
                    <= (a.updated_at, a.deleted, a.accepted_at, a.event_id) THEN 'stale_ignored'
               WHEN NOT i.deleted AND NOT a.deleted AND i.content_hash = a.content_hash
                   THEN 'duplicate'
               ELSE 'applied'
           END AS outcome,
           a.updated_at AS stored_updated_at
    FROM incoming i
    LEFT JOIN assets a ON a.provider_id = i.provider_id AND a.asset_id = i.asset_id
),
written AS (
    INSERT INTO assets AS a (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                             source, document, content_hash, status, applied_at, deleted_at)
    SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
           source, document, content_hash, status, now(),
           CASE WHEN deleted THEN updated_at END
    FROM decided
    WHERE outcome <> 'stale_ignored'
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
        applied_at = CASE WHEN NOT EXCLUDED.deleted AND NOT a.deleted
                               AND a.content_hash = EXCLUDED.content_hash
                          THEN a.applied_at ELSE now() END,
        deleted_at = EXCLUDED.deleted_at
    WHERE (EXCLUDED.updated_at, EXCLUDED.deleted, EXCLUDED.accepted_at, EXCLUDED.event_id)
          > (a.updated_at, a.deleted, a.accepted_at, a.event_id)
    RETURNING a.event_id
)
SELECT d.event_id, d.outcome, d.stored_updated_at,
       (w.event_id IS NOT NULL) AS written
FROM decided d LEFT JOIN written w ON w.event_id = d.event_id
"""
