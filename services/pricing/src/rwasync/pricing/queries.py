"""Every SQL statement the pricing service runs."""

# One statement per batch of ticks (already one per (asset, as_of), the latest accepted): every
# tick is recorded in history, where at equal as_of the later-accepted tick replaces the earlier
# one (a provider correcting a price); the latest price moves only forward in (as_of, accepted_at).
# A duplicate (same amount and currency, accepted later) changes no price but still takes its
# acceptance instant, as in the reconciler: otherwise a tick accepted between the two, delivered
# last, would win although the duplicate was accepted after it.
APPLY_PRICE_TICKS = """
WITH incoming AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[], $5::text[],
                $6::timestamptz[], $7::uuid[])
         AS i(provider_id, asset_id, as_of, amount, currency, accepted_at, event_id)
),
decided AS (
    SELECT i.*,
           CASE
               WHEN h.asset_id IS NULL THEN 'applied'
               WHEN (i.accepted_at, i.event_id) <= (h.accepted_at, h.event_id) THEN 'stale_ignored'
               WHEN i.amount = h.amount AND i.currency = h.currency THEN 'duplicate'
               ELSE 'applied'
           END AS outcome
    FROM incoming i
    LEFT JOIN price_history h
           ON h.provider_id = i.provider_id AND h.asset_id = i.asset_id AND h.as_of = i.as_of
),
history AS (
    INSERT INTO price_history AS h
        (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id)
    SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id
    FROM decided WHERE outcome IN ('applied', 'duplicate')
    ON CONFLICT (provider_id, asset_id, as_of) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency,
        accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id
    WHERE (EXCLUDED.accepted_at, EXCLUDED.event_id) > (h.accepted_at, h.event_id)
),
latest AS (
    INSERT INTO asset_prices AS p
        (provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, applied_at)
    SELECT DISTINCT ON (provider_id, asset_id)
           provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, now()
    FROM decided WHERE outcome IN ('applied', 'duplicate')
    ORDER BY provider_id, asset_id, as_of DESC, accepted_at DESC, event_id DESC
    ON CONFLICT (provider_id, asset_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, as_of = EXCLUDED.as_of,
        accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id,
        applied_at = EXCLUDED.applied_at
    WHERE (EXCLUDED.as_of, EXCLUDED.accepted_at, EXCLUDED.event_id)
          > (p.as_of, p.accepted_at, p.event_id)
    RETURNING p.event_id
)
SELECT d.event_id, d.outcome, (l.event_id IS NOT NULL) AS latest
FROM decided d LEFT JOIN latest l ON l.event_id = d.event_id
"""

LATEST_PRICE = """
SELECT p.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at,
       v.price_freshness
FROM providers v
JOIN latest_prices p ON p.provider_id = v.provider_id
WHERE v.provider_id = $1 AND p.asset_id = $2 AND NOT v.disabled
"""
