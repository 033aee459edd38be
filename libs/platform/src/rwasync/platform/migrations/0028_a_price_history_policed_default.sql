-- A previous release writes price history without knowing `policed` (0027): its checked path
-- then left the default, false, which marks a tick the provider's policy did judge as unjudged,
-- so a release of a held tick never re-checked the ticks after it, and a late tick never
-- re-held them (upgrade trial: 430 ticks in a one-minute rolling window). The default is now
-- true, the rule as before 0027, for any writer unaware of the column; this release's two paths
-- name it (true checked, false policy-free).
-- `price_apply_tick_batch_2` is 0017's `price_apply_tick_batch` writing `policed` false: the
-- statement is rwasync.pricing.queries.APPLY_TICKS, verbatim (a test keeps the two equal; change
-- both together, in a new migration). 0017's function stays for processes of the previous
-- release during a rolling upgrade (with the default, it now writes true, as before 0027).
ALTER TABLE price_history ALTER COLUMN policed SET DEFAULT true;

CREATE FUNCTION price_apply_tick_batch_2(
    text[], text[], timestamptz[], numeric[], text[], timestamptz[], uuid[], text[],
    uuid[], text[], text[], timestamptz[], text[], text, text, text, int, int)
RETURNS TABLE (policed text[], logged bigint, statuses text[], counts bigint[])
LANGUAGE plpgsql VOLATILE
-- See above: no plan of this function reads a whole table.
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock($17, s)
    FROM (SELECT DISTINCT (hashtext(p || '/' || a) & 2147483647) % $18 AS s
          FROM (SELECT CASE WHEN cardinality($1) = 1 THEN $1[1] ELSE $1[k.n] END, k.a
                FROM unnest($2) WITH ORDINALITY AS k(a, n)) AS keys(p, a)
          ORDER BY 1) AS stripes;
    RETURN QUERY
WITH incoming AS (
    SELECT CASE WHEN cardinality($1::text[]) = 1 THEN ($1::text[])[1] ELSE ($1::text[])[i.n] END
               AS provider_id,
           i.asset_id, i.as_of, i.amount, i.currency, i.accepted_at, i.event_id,
           'visible'::text AS state, NULL::text AS hold_kind, NULL::text AS hold_reason,
           CASE WHEN cardinality($8::text[]) = 1 THEN ($8::text[])[1] ELSE ($8::text[])[i.n] END
               AS trace_id
    FROM unnest($2::text[], $3::timestamptz[], $4::numeric[], $5::text[], $6::timestamptz[],
                $7::uuid[]) WITH ORDINALITY
         AS i(asset_id, as_of, amount, currency, accepted_at, event_id, n)
),
policed AS (
    SELECT provider_id FROM price_policies
    WHERE provider_id IN (SELECT provider_id FROM incoming)
      AND (max_jump IS NOT NULL OR currency_check)
),
go AS (SELECT NOT EXISTS (SELECT 1 FROM policed) AS ok),
decided AS (
    SELECT i.*,
           CASE
               WHEN h.asset_id IS NULL THEN 'applied'
               WHEN (i.accepted_at, i.event_id) <= (h.accepted_at, h.event_id) THEN 'stale_ignored'
               WHEN h.state <> 'rejected' AND i.amount = h.amount AND i.currency = h.currency
                   THEN 'duplicate'
               ELSE 'applied'
           END AS outcome,
           h.state AS stored_state, h.event_id AS stored_event_id, h.hold_reason AS stored_reason
    FROM incoming i
    -- One primary-key probe per tick whatever the statistics say (a generic plan made while the
    -- table was small scanned all of history for every batch); LIMIT keeps the planner from
    -- turning it back into a join (the key is unique: one row at most anyway).
    LEFT JOIN LATERAL (
        SELECT h.asset_id, h.accepted_at, h.event_id, h.state, h.amount, h.currency,
               h.hold_reason
        FROM price_history h
        WHERE h.provider_id = i.provider_id AND h.asset_id = i.asset_id AND h.as_of = i.as_of
        LIMIT 1
    ) h ON true
),
recorded AS (
    INSERT INTO price_history
        (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
         policed, state, hold_kind, hold_reason, held_at)
    SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
           false, state, hold_kind, hold_reason, CASE WHEN state = 'held' THEN now() END
    FROM decided WHERE stored_state IS NULL AND (SELECT ok FROM go)
),
history AS (
    INSERT INTO price_history AS h
        (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
         policed, state, hold_kind, hold_reason, held_at)
    SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
           false, state, hold_kind, hold_reason, CASE WHEN state = 'held' THEN now() END
    FROM decided WHERE outcome IN ('applied', 'duplicate') AND stored_state IS NOT NULL AND (SELECT ok FROM go)
    ON CONFLICT (provider_id, asset_id, as_of) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency,
        accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id,
        state = CASE WHEN h.state <> 'rejected' AND (h.amount, h.currency)
                                                    = (EXCLUDED.amount, EXCLUDED.currency)
                     THEN h.state ELSE EXCLUDED.state END,
        hold_kind = CASE WHEN h.state <> 'rejected' AND (h.amount, h.currency)
                                                        = (EXCLUDED.amount, EXCLUDED.currency)
                         THEN h.hold_kind ELSE EXCLUDED.hold_kind END,
        hold_reason = CASE WHEN h.state <> 'rejected' AND (h.amount, h.currency)
                                                          = (EXCLUDED.amount, EXCLUDED.currency)
                           THEN h.hold_reason ELSE EXCLUDED.hold_reason END,
        held_at = CASE WHEN h.state <> 'rejected' AND (h.amount, h.currency)
                                                      = (EXCLUDED.amount, EXCLUDED.currency)
                       THEN h.held_at ELSE EXCLUDED.held_at END
    WHERE (EXCLUDED.accepted_at, EXCLUDED.event_id) > (h.accepted_at, h.event_id)
),
moving AS (
    SELECT DISTINCT ON (provider_id, asset_id)
           provider_id, asset_id, amount, currency, as_of, accepted_at, event_id
    FROM decided
    WHERE (outcome = 'applied'
           OR (outcome = 'duplicate' AND stored_state IN ('visible', 'released')))
      AND (SELECT ok FROM go)
    ORDER BY provider_id, asset_id, as_of DESC, accepted_at DESC, event_id DESC
),
-- Each asset's latest price before this statement, one primary-key probe per asset: whether it
-- moves, and (for the change log) whether its amount, currency or as_of change.
prior AS (
    SELECT m.*, o.asset_id IS NOT NULL AS priced,
           o.amount AS prior_amount, o.currency AS prior_currency, o.as_of AS prior_as_of
    FROM moving m
    LEFT JOIN LATERAL (
        SELECT p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at, p.event_id
        FROM asset_prices p
        WHERE p.provider_id = m.provider_id AND p.asset_id = m.asset_id
        LIMIT 1
    ) o ON true
    WHERE o.asset_id IS NULL
       OR (m.as_of, m.accepted_at, m.event_id) > (o.as_of, o.accepted_at, o.event_id)
),
moved AS (
    UPDATE asset_prices p
    SET amount = m.amount, currency = m.currency, as_of = m.as_of,
        accepted_at = m.accepted_at, event_id = m.event_id, applied_at = now()
    FROM prior m
    WHERE m.priced AND p.provider_id = m.provider_id AND p.asset_id = m.asset_id
      AND (m.as_of, m.accepted_at, m.event_id) > (p.as_of, p.accepted_at, p.event_id)
    RETURNING p.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at,
              p.event_id, m.priced, m.prior_amount, m.prior_currency, m.prior_as_of
),
added AS (
    INSERT INTO asset_prices AS p
        (provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, applied_at)
    SELECT provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, now()
    FROM prior WHERE NOT priced
    ON CONFLICT (provider_id, asset_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, as_of = EXCLUDED.as_of,
        accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id,
        applied_at = EXCLUDED.applied_at
    WHERE (EXCLUDED.as_of, EXCLUDED.accepted_at, EXCLUDED.event_id)
          > (p.as_of, p.accepted_at, p.event_id)
    RETURNING p.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at, p.event_id,
              false, NULL::numeric, NULL::char(3), NULL::timestamptz
),
latest AS (SELECT * FROM moved UNION ALL SELECT * FROM added),
-- In the order of migration 0016's log (by asset), so change ids are handed out alike.
logged AS (
    INSERT INTO price_changes (provider_id, asset_id, amount, currency, as_of, accepted_at)
    SELECT provider_id, asset_id, amount, currency, as_of, accepted_at
    FROM latest
    WHERE NOT priced OR (amount, currency, as_of)
                        IS DISTINCT FROM (prior_amount, prior_currency, prior_as_of)
    ORDER BY provider_id, asset_id
    RETURNING 1
),
-- Each tick's receipt: a duplicate of a held tick takes over its hold (and its reason).
verdicts AS (
    SELECT d.event_id AS e, d.provider_id AS p, d.asset_id AS a, 'price.updated' AS t,
           CASE WHEN d.outcome = 'duplicate' AND d.stored_state = 'held' THEN 'held'
                ELSE d.outcome END AS s,
           CASE WHEN d.outcome = 'stale_ignored' THEN $14::text
                WHEN d.outcome = 'duplicate' AND d.stored_state = 'held' THEN d.stored_reason
           END AS r,
           CASE WHEN d.outcome = 'applied' THEN l.event_id IS NOT NULL END AS l,
           d.accepted_at AS ts, d.trace_id AS tr
    FROM decided d LEFT JOIN latest l ON l.event_id = d.event_id
    WHERE (SELECT ok FROM go)
    UNION ALL
    SELECT e, p, a, 'price.updated', 'stale_ignored', $15::text, NULL::bool, ts, tr
    FROM unnest($9::uuid[], $10::text[], $11::text[], $12::timestamptz[], $13::text[])
         AS x(e, p, a, ts, tr)
    WHERE (SELECT ok FROM go)
),
receipted AS (
UPDATE event_receipts
SET status = u.s, reason = u.r, latest = u.l, decided_at = now(),
    trace_id = coalesce(event_receipts.trace_id, nullif(u.tr, ''))
FROM verdicts u
WHERE event_receipts.event_id = u.e
  -- Not `= 'accepted'`: the planner would then read every undecided receipt through
  -- event_receipts_undecided (however many wait) and hash them, instead of one probe per key.
  AND event_receipts.status IS NOT DISTINCT FROM 'accepted'
RETURNING event_receipts.event_id
),
unreceipted AS (
INSERT INTO event_receipts
    (event_id, provider_id, asset_id, type, status, reason, latest, accepted_at, decided_at,
     trace_id)
SELECT e, p, a, t, s, r, l, ts, now(), nullif(tr, '')
FROM verdicts WHERE e NOT IN (SELECT event_id FROM receipted)
ON CONFLICT (event_id) DO UPDATE
    SET status = EXCLUDED.status, reason = EXCLUDED.reason, latest = EXCLUDED.latest,
        decided_at = EXCLUDED.decided_at,
        trace_id = coalesce(event_receipts.trace_id, EXCLUDED.trace_id)
    WHERE event_receipts.status = 'accepted'
),
-- The tick that now carries a stored held entry took over its hold: the one it replaced ends
-- `stale_ignored`.
replaced AS (
UPDATE event_receipts r
SET status = u.s, reason = u.r, latest = u.l, decided_at = now()
FROM (SELECT stored_event_id, 'stale_ignored', $16::text, NULL::bool
      FROM decided
      WHERE outcome <> 'stale_ignored' AND stored_state = 'held' AND (SELECT ok FROM go))
     AS u(e, s, r, l)
WHERE r.event_id = u.e AND r.type = 'price.updated'
  AND r.status IN ('applied', 'duplicate', 'held')
)
SELECT (SELECT array_agg(provider_id ORDER BY provider_id) FROM policed) AS policed,
       (SELECT count(*) FROM logged) AS logged, c.statuses, c.counts
FROM (SELECT array_agg(s ORDER BY s) AS statuses, array_agg(n ORDER BY s) AS counts
      FROM (SELECT s, count(*) AS n FROM verdicts GROUP BY s) g) c;
END
$fn$;
