"""Every SQL statement the pricing service runs of its own. Statements the operator CLI shares
(locks, policies, re-running holds, moving the latest price) live in `rwasync.store.prices`.

Sections: applying ticks (the parts the statements share, then `APPLY_TICKS`, which migration
0017's function holds verbatim, and `APPLY_PLAIN`, which calls it); investor reads; the change
log behind the stream."""

from typing import Final

from rwasync.store import receipts

# --- applying ticks ----------------------------------------------------------------------------


# Records a batch of ticks (already one per (asset, as_of), the latest accepted) in history,
# where at equal as_of the later-accepted tick replaces the earlier one (a provider correcting a
# price). A tick equal in amount and currency to the stored one, accepted later, is a duplicate:
# it keeps the stored hold state but takes its acceptance instant, as in the reconciler
# (otherwise a tick accepted between the two, delivered last, would win although the duplicate
# was accepted after it). A tick an operator rejected counts as absent for that comparison, so a
# later correction is checked afresh. `state`, `hold_kind` and `hold_reason` are what the tick is
# recorded with when it is new: `visible`, or `held` for a currency hold; `trace_id` goes to the
# receipt when the statement writes receipts too (APPLY_TICKS).
def _record_ticks(incoming: str, gate: str = "", condition: str = "true") -> str:
    """The statement's first part; `incoming` selects the ticks, `gate` adds CTEs after it and
    `condition` (over them) must hold for history to be written."""
    return _decide_ticks(incoming, gate) + "," + _upsert_history(condition, policed=True)


def _decide_ticks(incoming: str, gate: str = "") -> str:
    """`incoming`, `gate`'s CTEs, and `decided`: each tick with its outcome and the history entry
    stored at its (asset, as_of), found by one primary-key probe (`stored_state` is NULL when
    there is none)."""
    return (
        """
WITH incoming AS ("""
        + incoming
        + """),"""
        + gate
        + """
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
)"""
    )


def _upsert_history(condition: str, *, policed: bool = False) -> str:
    """`history`: the applied and duplicate ticks of `decided` for which `condition` holds,
    upserted at their (asset, as_of), a stored entry replaced only by a later-accepted tick.
    `policed`: the checked path's, which marks the entries its policy judged true; the
    policy-free path writes false (a re-sent tick keeps its entry's mark, as its state). Both
    name the column: its default (true, migration 0028) is for a previous release's writers,
    which know nothing of it (migration 0027's false made a previous release's checked ticks
    look unjudged during a rolling upgrade: upgrade trial)."""
    column, value, update = "policed, ", "false, ", ""
    if policed:
        value = "true, "
        update = """,
        policed = CASE WHEN h.state <> 'rejected' AND (h.amount, h.currency)
                                                       = (EXCLUDED.amount, EXCLUDED.currency)
                        THEN h.policed ELSE true END"""
    return (
        """
history AS (
    INSERT INTO price_history AS h
        (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
         """
        + column
        + """state, hold_kind, hold_reason, held_at)
    SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
           """
        + value
        + """state, hold_kind, hold_reason, CASE WHEN state = 'held' THEN now() END
    FROM decided WHERE outcome IN ('applied', 'duplicate') AND """
        + condition
        + """
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
                       THEN h.held_at ELSE EXCLUDED.held_at END"""
        + update
        + """
    WHERE (EXCLUDED.accepted_at, EXCLUDED.event_id) > (h.accepted_at, h.event_id)
)"""
    )


# The ticks, each with the state it is recorded in (decided per tick on the checked path).
_TICKS_WITH_STATES = """
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[], $5::text[],
                $6::timestamptz[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[])
         AS i(provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
              state, hold_kind, hold_reason, trace_id)
"""

# The ticks of the policy-free path, all recorded visible. Their provider and trace ids, the same
# for a whole message as ingest-api publishes it, come once when all are equal (an array of one,
# `once_if_equal`): with the constant states left out, about half the bytes of the arguments,
# which asyncpg encodes and the socket carries tick by tick.
_VISIBLE_TICKS = """
    SELECT CASE WHEN cardinality($1::text[]) = 1 THEN ($1::text[])[1] ELSE ($1::text[])[i.n] END
               AS provider_id,
           i.asset_id, i.as_of, i.amount, i.currency, i.accepted_at, i.event_id,
           'visible'::text AS state, NULL::text AS hold_kind, NULL::text AS hold_reason,
           CASE WHEN cardinality($8::text[]) = 1 THEN ($8::text[])[1] ELSE ($8::text[])[i.n] END
               AS trace_id
    FROM unnest($2::text[], $3::timestamptz[], $4::numeric[], $5::text[], $6::timestamptz[],
                $7::uuid[]) WITH ORDINALITY
         AS i(asset_id, as_of, amount, currency, accepted_at, event_id, n)
"""

# With sanity holds on, the hold rule then runs over the affected ticks and the latest price is
# refreshed from history (rwasync.store.prices): this statement only records.
RECORD_TICKS = (
    _record_ticks(_TICKS_WITH_STATES)
    + """
SELECT event_id, outcome, stored_state, stored_event_id, stored_reason, false AS latest,
       0::bigint AS logged
FROM decided
"""
)

# Without holds (the provider has no policy), one statement does it all: record, then move the
# latest price only forward in (as_of, accepted_at, event_id) — a late older tick lands in history
# but never regresses it — log each asset whose amount, currency or as_of moved for the stream (a
# burst is coalesced to one change per asset; a repeated tick logs none), and write every tick's
# receipt (ticks superseded within the batch, $9–$13, included) and move the receipt of a held
# tick replaced at its as_of: one round trip instead of three.
#
# It runs inside `price_apply_tick_batch_2` (migration 0028, which holds this text verbatim), after
# the stripe locks: one round trip with BEGIN and COMMIT included. Every other writer of history
# and latest prices holds the same locks (the checked path, the CLI), and the statement's snapshot
# is taken after them, so what it reads of its assets stays true until it commits: it writes by
# what it read. A tick with no stored entry at its (asset, as_of) is inserted plainly, an asset
# whose latest price moves is updated by key, a receipt still `accepted` is updated by key; the
# upserts of migration 0016, which probed each key again, locked each row before updating it (a
# WAL record more per row) and confirmed each speculative insert (one more), remain only for the
# rest: a stored entry replaced at its as_of, an asset's first price, a receipt not recorded yet
# (ingest-api may record it after the snapshot: the upsert decides it then) or decided already.
# Were the locks ever bypassed, an entry inserted meanwhile would make the plain insert fail on
# the key and the message be retried, and a latest price moved meanwhile is re-checked against
# its guard by the update as by the upsert: never a wrong row. Postgres CPU per tick about a tenth
# less in pricing's harness, less end to end (docs/performance.md, "Round 5" under Pricing).
#
# Whether the providers have no policy is the caller's belief (a cache): `policed` checks it in
# the statement's own snapshot — taken after the stripe locks, as the policy look-up it replaces
# was — and if a provider has an active policy after all, nothing is written (every write below is
# conditional on `policed` being empty) and the statement answers which providers have one.
APPLY_TICKS = (
    _decide_ticks(
        _VISIBLE_TICKS,
        gate="""
policed AS (
    SELECT provider_id FROM price_policies
    WHERE provider_id IN (SELECT provider_id FROM incoming)
      AND (max_jump IS NOT NULL OR currency_check)
),
go AS (SELECT NOT EXISTS (SELECT 1 FROM policed) AS ok),""",
    )
    + """,
recorded AS (
    INSERT INTO price_history
        (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
         policed, state, hold_kind, hold_reason, held_at)
    SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id,
           false, state, hold_kind, hold_reason, CASE WHEN state = 'held' THEN now() END
    FROM decided WHERE stored_state IS NULL AND (SELECT ok FROM go)
),"""
    + _upsert_history("stored_state IS NOT NULL AND (SELECT ok FROM go)")
    + """,
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
receipted AS ("""
    + receipts.decisions_update("verdicts u")
    + """),
unreceipted AS ("""
    + receipts.decisions_insert("verdicts WHERE e NOT IN (SELECT event_id FROM receipted)")
    + """),
-- The tick that now carries a stored held entry took over its hold: the one it replaced ends
-- `stale_ignored`.
replaced AS ("""
    + receipts.price_redecisions_update(
        """(SELECT stored_event_id, 'stale_ignored', $16::text, NULL::bool
      FROM decided
      WHERE outcome <> 'stale_ignored' AND stored_state = 'held' AND (SELECT ok FROM go))
     AS u(e, s, r, l)"""
    )
    + """)
SELECT (SELECT array_agg(provider_id ORDER BY provider_id) FROM policed) AS policed,
       (SELECT count(*) FROM logged) AS logged, c.statuses, c.counts
FROM (SELECT array_agg(s ORDER BY s) AS statuses, array_agg(n ORDER BY s) AS counts
      FROM (SELECT s, count(*) AS n FROM verdicts GROUP BY s) g) c
"""
)

# Takes the stripe locks of the ticks' assets ($17: the lock space, $18: the stripes), then runs
# APPLY_TICKS ($1–$16); outside a transaction block, the whole apply is one round trip.
APPLY_PLAIN: Final = """
SELECT policed, logged, statuses, counts
FROM price_apply_tick_batch_2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                              $15, $16, $17, $18)
"""

# --- investor reads ---------------------------------------------------------------------------

# One asset's latest price with its provider's freshness window: a row with a NULL asset when the
# provider exists but the asset has no visible price; no row when the provider is unknown or
# disabled.
LATEST_PRICE: Final = """
SELECT v.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at,
       v.price_freshness
FROM providers v
LEFT JOIN latest_prices p ON p.provider_id = v.provider_id AND p.asset_id = $2
WHERE v.provider_id = $1 AND NOT v.disabled
"""

# Many assets of one provider: one row per found price, or a single row with a NULL asset when
# the provider exists but none was found; no row when the provider is unknown or disabled.
LATEST_PRICES: Final = """
SELECT v.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at,
       v.price_freshness
FROM providers v
LEFT JOIN latest_prices p ON p.provider_id = v.provider_id AND p.asset_id = ANY($2::text[])
WHERE v.provider_id = $1 AND NOT v.disabled
"""

# Whether a provider's prices are served (known and not disabled).
PROVIDER_SERVED: Final = """
SELECT EXISTS (SELECT 1 FROM providers WHERE provider_id = $1 AND NOT disabled)
"""

# Visible ticks in [from, to), after the cursor's as_of, ascending; one more than the page to
# know whether another page follows.
HISTORY: Final = """
SELECT amount, currency, as_of, accepted_at
FROM price_history
WHERE provider_id = $1 AND asset_id = $2 AND state IN ('visible', 'released')
  AND as_of >= $3 AND as_of < $4 AND ($5::timestamptz IS NULL OR as_of > $5)
ORDER BY as_of
LIMIT $6
"""

# Candles over visible ticks in [from, to): buckets of `interval` aligned on the Unix epoch
# (UTC), open and close by as_of, one candle per bucket and currency.
OHLC: Final = """
SELECT date_bin($5::interval, as_of, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS start,
       currency,
       (array_agg(amount ORDER BY as_of))[1] AS open,
       max(amount) AS high,
       min(amount) AS low,
       (array_agg(amount ORDER BY as_of DESC))[1] AS close,
       count(*) AS count
FROM price_history
WHERE provider_id = $1 AND asset_id = $2 AND state IN ('visible', 'released')
  AND as_of >= $3 AND as_of < $4
GROUP BY 1, 2
ORDER BY 1, 2
"""

# --- the change log behind the stream ---------------------------------------------------------

# The changes after a position, below the horizon ($3), in the one order every reader sees;
# `pending` tells whether changes wait for a writer still running.
CHANGES_AFTER: Final = """
SELECT EXISTS (SELECT 1 FROM price_changes WHERE xid >= $3) AS pending,
       c.xid, c.change_id, c.provider_id, c.asset_id, c.amount, c.currency, c.as_of,
       c.accepted_at, v.price_freshness, coalesce(v.disabled, true) AS disabled
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT * FROM price_changes c
    WHERE (c.xid, c.change_id) > ($1, $2) AND c.xid < $3
    ORDER BY c.xid, c.change_id
    LIMIT $4
) c ON true
LEFT JOIN providers v ON v.provider_id = c.provider_id
ORDER BY c.xid, c.change_id
"""

# One subscriber's replay: its provider's (and assets') changes in (after, upto], in order.
REPLAY: Final = """
SELECT c.xid, c.change_id, c.provider_id, c.asset_id, c.amount, c.currency, c.as_of,
       c.accepted_at, v.price_freshness, v.disabled
FROM price_changes c JOIN providers v ON v.provider_id = c.provider_id
WHERE c.provider_id = $1 AND ($2::text[] IS NULL OR c.asset_id = ANY($2::text[]))
  AND (c.xid, c.change_id) > ($3, $4) AND (c.xid, c.change_id) <= ($5, $6)
ORDER BY c.xid, c.change_id
LIMIT $7
"""

# The newest change removed from the log: resuming from before it answers `event: reset`.
TRIM_POINT: Final = "SELECT xid, change_id FROM price_change_trim"

# Whether a resume point names a change still kept.
CHANGE_KEPT: Final = "SELECT EXISTS (SELECT 1 FROM price_changes WHERE xid = $1 AND change_id = $2)"

# Removes up to $2 changes older than $1 seconds, in stream order (xid, change_id) and only below
# the first change still young, and moves the trim point past them: every change kept is after
# the trim point, so a resume from any of them is served, never told to reset. (Transactions
# start, and so stamp `changed_at`, in another order than their ids.)
TRIM_CHANGES: Final = """
WITH young AS (
    SELECT xid, change_id FROM price_changes
    WHERE changed_at >= now() - make_interval(secs => $1)
    ORDER BY xid, change_id LIMIT 1
),
doomed AS (
    SELECT c.xid, c.change_id FROM price_changes c
    WHERE NOT EXISTS (SELECT 1 FROM young y WHERE (c.xid, c.change_id) >= (y.xid, y.change_id))
    ORDER BY c.xid, c.change_id LIMIT $2
),
gone AS (
    DELETE FROM price_changes c USING doomed d
    WHERE c.xid = d.xid AND c.change_id = d.change_id
    RETURNING c.xid, c.change_id
),
top AS (SELECT xid, change_id FROM gone ORDER BY xid DESC, change_id DESC LIMIT 1),
moved AS (
    UPDATE price_change_trim t SET xid = top.xid, change_id = top.change_id
    FROM top WHERE (top.xid, top.change_id) > (t.xid, t.change_id)
)
SELECT count(*) FROM gone
"""

# Monthly history partitions around now (see migration 0010_a).
ENSURE_MONTHS: Final = "SELECT price_history_ensure_months($1, $2)"
