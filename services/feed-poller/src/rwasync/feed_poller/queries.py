"""Every SQL statement the feed poller runs.

Runs move queued → running (claimed) → ok | not_modified | held | failed; a held run an operator
approved is claimed again while it stays `held` with `decision = 'approve'`. A claim is a lease
(`claimed_by`, `claimed_until`) renewed while the run works, so that replicas never run one run
twice and the runs of a replica that died go back to the queue. Runs of one feed never overlap:
a claim locks the feed's row too (so two replicas cannot both pass the "feed not busy" test) and
skips feeds with a run in progress. Row locks are NO KEY UPDATE so that inserting runs (a foreign
key share lock on the feed) never waits for a claim. No provider has more than
`max_runs_per_provider` runs in progress, across replicas: claims take turns on one advisory lock
(`claims.py`), so each counts the runs in progress with every earlier claim committed.
"""

from rwasync.store.feeds import LATEST_OK_RUN, LISTED_BY_ANOTHER_FEED, SUPERSEDED
from rwasync.store.receipts import PENDING_PUSHES

# Feeds whose time has come (scheduled by interval or cron), locked so that replicas schedule
# side by side without doubling a run; the poller computes each next time (`rwasync.feeds.schedule`)
# and the two statements below record it, in the same transaction.
DUE_FEEDS = """
SELECT feed_id, provider_id, interval_seconds, cron
FROM feed_sources
WHERE enabled AND (interval_seconds IS NOT NULL OR cron IS NOT NULL) AND next_run_at <= now()
ORDER BY next_run_at
LIMIT 100
FOR NO KEY UPDATE SKIP LOCKED
"""

# $1 feed ids, $2 their next run times.
ADVANCE_SCHEDULES = """
UPDATE feed_sources f SET next_run_at = u.next_run_at
FROM unnest($1::text[], $2::timestamptz[]) AS u(feed_id, next_run_at)
WHERE f.feed_id = u.feed_id
"""

# A queued run for each due feed, unless it still has one queued. $1 feed ids, $2 providers.
QUEUE_SCHEDULED_RUNS = """
INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger)
SELECT 'run_' || substr(md5(gen_random_uuid()::text), 1, 16), u.feed_id, u.provider_id,
       'queued', 'schedule'
FROM unnest($1::text[], $2::text[]) AS u(feed_id, provider_id)
WHERE NOT EXISTS (
    SELECT 1 FROM feed_runs q WHERE q.feed_id = u.feed_id AND q.status = 'queued'
)
RETURNING run_id, feed_id
"""

# What a claimed run needs to execute, returned by both claims.
_CLAIMED_COLUMNS = """
    r.run_id, r.feed_id, r.provider_id, r.trigger, r.started_at, r.snapshot_time, r.counts,
    r.errors, r.staged_items,
    f.url, f.format, f.auth, f.auth_secret, f.deletion_threshold_percent,
    f.deletion_threshold_min_count, f.created_at AS feed_created_at
"""

# A run of this feed is being worked on (running, or an approval under a live lease).
_FEED_BUSY = """
    EXISTS (
        SELECT 1 FROM feed_runs b
        WHERE b.feed_id = q.feed_id AND b.run_id <> q.run_id
          AND (b.status = 'running'
               OR (b.status = 'held' AND b.decision = 'approve' AND b.claimed_until > now()))
    )
"""

# Runs in progress per provider (as `_FEED_BUSY` counts them), for the claims below: a provider
# at the limit waits, and one with fewer goes first, so a provider whose feeds hang or sleep
# between retries holds at most the limit of the slots and never delays the others' runs.
# (Both arms fall within the index `feed_runs_pending`.)
_PROVIDER_BUSY = """
    WITH busy AS (
        SELECT b.provider_id, count(*) AS runs
        FROM feed_runs b
        WHERE b.status = 'running'
           OR (b.status = 'held' AND b.decision = 'approve' AND b.claimed_until > now())
        GROUP BY b.provider_id
    )
"""
_FAIR_PICK = """
      LEFT JOIN busy p ON p.provider_id = q.provider_id
      WHERE COALESCE(p.runs, 0) < $3 AND {where}
      ORDER BY COALESCE(p.runs, 0), q.requested_at, q.run_id
      LIMIT 1
      FOR NO KEY UPDATE OF q, s SKIP LOCKED
"""

# Claim a queued run: of the provider with the fewest runs in progress (under $3), the oldest.
# $1 replica, $2 lease seconds, $3 the limit per provider.
CLAIM_QUEUED_RUN = f"""
{_PROVIDER_BUSY}
UPDATE feed_runs r
SET status = 'running', started_at = now(), claimed_by = $1,
    claimed_until = now() + make_interval(secs => $2)
FROM feed_sources f
WHERE f.feed_id = r.feed_id
  AND r.run_id = (
      SELECT q.run_id
      FROM feed_runs q JOIN feed_sources s ON s.feed_id = q.feed_id
      {_FAIR_PICK.format(where=f"q.status = 'queued' AND NOT {_FEED_BUSY}")}
  )
RETURNING {_CLAIMED_COLUMNS}
"""

_APPROVED_CLAIMABLE = f"""q.status = 'held' AND q.decision = 'approve'
        AND (q.claimed_until IS NULL OR q.claimed_until < now())
        AND NOT {_FEED_BUSY}"""

# Claim an approved held run not under a live lease, picked as a queued run is: $1 replica,
# $2 lease seconds, $3 the limit per provider.
CLAIM_APPROVED_RUN = f"""
{_PROVIDER_BUSY}
UPDATE feed_runs r
SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
FROM feed_sources f
WHERE f.feed_id = r.feed_id
  AND r.run_id = (
      SELECT q.run_id
      FROM feed_runs q JOIN feed_sources s ON s.feed_id = q.feed_id
      {_FAIR_PICK.format(where=_APPROVED_CLAIMABLE)}
  )
RETURNING {_CLAIMED_COLUMNS}
"""

# Claims take turns across replicas (key 0 of `LockSpace.FEED_RUN_CLAIMS`), until the claim's
# transaction ends: see `RunClaims.claim`.
LOCK_CLAIMS = "SELECT pg_advisory_xact_lock($1::int, 0)"

# Keep this replica's claims alive: $1 run ids, $2 replica, $3 lease seconds. Only runs still in
# progress (what FINISH_RUN accepts): a renewal that waited on the row lock of a run's ending
# once gave the ended run a lease again, and a held run then approved waited out that lease,
# 60 s, before any replica could claim the approval.
RENEW_LEASES = """
UPDATE feed_runs SET claimed_until = now() + make_interval(secs => $3)
WHERE run_id = ANY($1::text[]) AND claimed_by = $2
  AND (status = 'running' OR (status = 'held' AND decision = 'approve'))
RETURNING run_id
"""

# Runs whose replica stopped renewing its lease (it died): back to the queue. Approvals need no
# reset: an expired lease makes them claimable again.
RECOVER_EXPIRED_RUNS = """
WITH expired AS (
    SELECT run_id, claimed_by FROM feed_runs
    WHERE status = 'running' AND claimed_until < now()
    FOR UPDATE
)
UPDATE feed_runs r
SET status = 'queued', started_at = NULL, claimed_by = NULL, claimed_until = NULL
FROM expired
WHERE r.run_id = expired.run_id
RETURNING r.run_id, r.feed_id, expired.claimed_by
"""

# On shutdown, hand this replica's unfinished runs back at once: $1 run ids, $2 replica.
RELEASE_RUNS = """
UPDATE feed_runs
SET status = CASE WHEN status = 'running' THEN 'queued' ELSE status END,
    started_at = CASE WHEN status = 'running' THEN NULL ELSE started_at END,
    claimed_by = NULL, claimed_until = NULL
WHERE run_id = ANY($1::text[]) AND claimed_by = $2 AND status IN ('running', 'held')
"""

# What a run may skip rests on the catalogue still matching an earlier run's snapshot. A run
# that failed after publishing part of its snapshot (its counts say what it published) breaks
# that: neither the earlier body's digest nor its validators count after it, or a provider who
# reverts its export would get `not_modified` and keep the half-applied snapshot.
_NOT_PARTLY_OVERWRITTEN = """
NOT EXISTS (
    SELECT 1 FROM feed_runs AS later
    WHERE later.feed_id = r.feed_id AND later.status = 'failed'
      AND later.finished_at > r.finished_at
      AND (later.counts ->> 'created')::bigint + (later.counts ->> 'updated')::bigint
          + (later.counts ->> 'deleted')::bigint > 0
)
"""

# The decoded body's digest of the feed's last `ok` run: an identical body is `not_modified`.
LAST_OK_BODY_SHA256 = f"""
SELECT body_sha256 FROM feed_runs AS r
WHERE feed_id = $1 AND status = 'ok' AND body_sha256 IS NOT NULL AND {_NOT_PARTLY_OVERWRITTEN}
ORDER BY finished_at DESC NULLS LAST
LIMIT 1
"""

# The validators of the feed's last `ok` or `not_modified` response, sent back as a conditional
# request; only of a run started since the feed's settings last changed (`updated_at`), since
# another URL's validators mean nothing to the new one (a new server could answer 304 to an old
# `If-Modified-Since`, and its snapshot would never be read).
LAST_VALIDATORS = f"""
SELECT etag, last_modified FROM feed_runs AS r
WHERE feed_id = $1 AND status IN ('ok', 'not_modified')
  AND (etag IS NOT NULL OR last_modified IS NOT NULL) AND {_NOT_PARTLY_OVERWRITTEN}
  AND started_at >= (SELECT updated_at FROM feed_sources WHERE feed_id = $1)
ORDER BY finished_at DESC NULLS LAST
LIMIT 1
"""

# The newest snapshot time the feed applied (its `ok` runs but $2, this one): an
# older snapshot is held (`stale_snapshot`). $1 feed, $2 this run.
LAST_APPLIED_SNAPSHOT = """
SELECT max(snapshot_time) FROM feed_runs WHERE feed_id = $1 AND status = 'ok' AND run_id <> $2
"""

# Pushes accepted after this instant are protected from the deletion pass: the start of the
# latest earlier run of the feed that reached the comparison (ok or held), else the feed's
# creation. $1 feed, $2 this run, $3 this run's start.
PROTECTED_AFTER = """
SELECT COALESCE(
    (SELECT max(started_at) FROM feed_runs
     WHERE feed_id = $1 AND run_id <> $2 AND status IN ('ok', 'held') AND started_at < $3),
    (SELECT created_at FROM feed_sources WHERE feed_id = $1)
)
"""

# --- the staging table (`feed_run_items`) ----------------------------------------------------

STAGED_COLUMNS = (
    "run_id", "asset_id", "item_index", "valid", "fingerprint", "updated_at", "content_hash",
    "document", "price_amount", "price_currency", "price_as_of",
)  # fmt: skip

# A run recovered from a dead replica starts its staging afresh. $1 run.
CLEAR_STAGED_ITEMS = "DELETE FROM feed_run_items WHERE run_id = $1"

# The run whose items count as "accepted last time": the feed's latest `ok` run that staged them.
LAST_OK_STAGED_RUN = LATEST_OK_RUN.format(feed="$1", also="")

# Stage the items of a batch whose fingerprint matches an item of the previous run that is still
# exactly what is stored (same content hash, live): they need no validation, and take that item's
# id, version, hash and price, without a document (the price, so that the next run can tell
# whether an item's price changed: `price_sent_before`); not an item whose price was withheld,
# validated again instead, so that its decision is made afresh. $1 this run, $2 the previous run, $3
# provider, $4 the batch's fingerprints, $5 their item indexes. Returns the indexes staged.
STAGE_KNOWN_ITEMS = """
INSERT INTO feed_run_items (run_id, asset_id, item_index, valid, fingerprint, updated_at,
                            content_hash, price_amount, price_currency, price_as_of)
SELECT $1, k.asset_id, u.item_index, true, u.fingerprint, k.updated_at, k.content_hash,
       k.price_amount, k.price_currency, k.price_as_of
FROM unnest($4::bytea[], $5::integer[]) AS u(fingerprint, item_index)
JOIN (
    SELECT DISTINCT ON (i.fingerprint) i.fingerprint, i.asset_id, i.updated_at, i.content_hash,
           i.price_amount, i.price_currency, i.price_as_of
    FROM feed_run_items i
    JOIN asset_state a ON a.provider_id = $3 AND a.asset_id = i.asset_id
    WHERE i.run_id = $2 AND i.valid AND i.fingerprint = ANY($4::bytea[])
      AND NOT a.deleted AND a.content_hash = i.content_hash AND NOT i.price_withheld
) k ON k.fingerprint = u.fingerprint
RETURNING item_index
"""

# When staging ends: flag the rows of every id the run lists more than once (`duplicated`), in
# one pass over the run, so that the passes below read a column instead of probing the run's
# rows for each row. $1 run.
MARK_DUPLICATES = """
UPDATE feed_run_items SET duplicated = true
WHERE run_id = $1 AND asset_id IN (
    SELECT asset_id FROM feed_run_items WHERE run_id = $1
    GROUP BY asset_id HAVING count(*) > 1
)
"""

# A settled asset: the run lists it once, validly, with the content the provider's stored live
# asset has and no price to publish (none, or an item matched by fingerprint, without a document:
# the same bytes as the copy before, so its price was sent then): unchanged, with nothing to send.
# The comparison's passes count them (`COUNT_SETTLED`) instead of walking them, so a run with 1 %
# changed walks 1 % of its items. A condition on one joined row (`i` the run's item, `s` the
# stored asset), always used inside COALESCE. (It once probed the run's rows for another row of
# the id, per row; the planner, taking the run's rows for one row before the statistics caught
# up, once made that a join which read every row of the run for each of them.)
_SETTLED_ROW = """
    i.valid AND (i.price_amount IS NULL OR i.document IS NULL) AND NOT s.deleted
    AND s.content_hash = i.content_hash AND NOT i.duplicated
"""
COUNT_SETTLED = f"""
SELECT count(*)
FROM feed_run_items i
JOIN asset_state s ON s.provider_id = $2 AND s.asset_id = i.asset_id
WHERE i.run_id = $1 AND COALESCE({_SETTLED_ROW}, false)
"""

# The run's items joined with the provider's stored assets, one asset id after another: what the
# snapshot comparison walks. $1 run, $2 provider. The publish pass walks every id but the settled
# ones, with documents (and, for an unchanged item whose asset was deleted since, the tombstone's
# document, which has the item's content hash). The plan pass only decides the holds, which
# nothing but deletions and duplicates can trip (the live assets it counts apart:
# `COUNT_LIVE`), so it walks only the ids that can give either, without documents: stored live
# and not listed, listed invalidly, or listed more than once. The condition holds for every row of
# such an id (all rows of a duplicated id are flagged), so each walked id is walked whole; for a
# first run, or one with nothing missing, the walk is empty.
_JOINED = """
SELECT COALESCE(i.asset_id, s.asset_id) AS asset_id,
       i.item_index, i.valid, i.updated_at, i.content_hash,
       s.asset_id IS NOT NULL AS is_stored, s.updated_at AS stored_updated_at,
       s.deleted AS stored_deleted, s.accepted_at AS stored_accepted_at,
       s.event_id AS stored_event_id, s.source AS stored_source,
       s.content_hash AS stored_content_hash, p.pending_at AS stored_pending_push_at,
       CASE WHEN i.asset_id IS NULL AND NOT s.deleted THEN {elsewhere}
            ELSE false END AS stored_listed_elsewhere{extra}
FROM (SELECT * FROM feed_run_items WHERE run_id = $1) i
FULL JOIN (SELECT * FROM asset_state WHERE provider_id = $2) s ON s.asset_id = i.asset_id
LEFT JOIN ({pending}) p ON p.asset_id = s.asset_id
WHERE {where}
ORDER BY 1
"""
_ELSEWHERE = LISTED_BY_ANOTHER_FEED.format(
    provider="$2", feed="(SELECT feed_id FROM feed_runs WHERE run_id = $1)"
)
# The feed's latest `ok` run before run $1 that kept its items: an item of a live asset whose copy
# there had the same price, and did not withhold it, sent that price then (or when it first
# appeared), so it is no news:
# not when only the text changed (another format, other whitespace), nor when other fields did
# (sent again as of the new snapshot, the feed's old price replaced a fresher pushed one).
_PREVIOUS_OK_RUN = LATEST_OK_RUN.format(
    feed="(SELECT feed_id FROM feed_runs WHERE run_id = $1)", also=" AND r.run_id <> $1"
)
JOINED_FOR_PLAN = _JOINED.format(
    elsewhere=_ELSEWHERE,
    pending=PENDING_PUSHES.format(provider="$2"),
    extra="",
    where="(i.asset_id IS NULL AND NOT s.deleted) OR NOT i.valid OR i.duplicated",
)
JOINED_FOR_PUBLISH = _JOINED.format(
    elsewhere=_ELSEWHERE,
    pending=PENDING_PUSHES.format(provider="$2"),
    # What only tells an update from an unchanged item, which the plan pass does not need: the
    # stored document's own updated_at (read where it can matter; naming `s.document` in the plan
    # query made its join carry every document, 140 MB, spilt to disk), the patches' base.
    extra=f"""
       , s.base_updated_at AS stored_base_updated_at, s.base_deleted AS stored_base_deleted,
       s.base_accepted_at AS stored_base_accepted_at, s.base_event_id AS stored_base_event_id,
       s.base_content_hash AS stored_base_content_hash,
       CASE WHEN s.source = 'feed' AND NOT s.deleted AND i.valid AND i.updated_at <= s.updated_at
                 AND i.content_hash IS DISTINCT FROM s.content_hash
            THEN (s.document->>'updated_at')::timestamptz END AS stored_document_updated_at,
       i.document, i.price_amount, i.price_currency, i.price_as_of,
       CASE WHEN i.valid AND i.document IS NULL AND s.deleted
            THEN convert_to(s.document::text, 'UTF8') END AS stored_document,
       CASE WHEN i.price_amount IS NOT NULL AND NOT s.deleted
            THEN EXISTS (SELECT 1 FROM feed_run_items q
                         WHERE q.run_id = ({_PREVIOUS_OK_RUN}) AND q.asset_id = i.asset_id
                           AND q.valid AND NOT q.price_withheld
                           AND q.price_amount = i.price_amount
                           AND q.price_currency = i.price_currency
                           AND q.price_as_of IS NOT DISTINCT FROM i.price_as_of)
            ELSE false END AS price_sent_before""",
    where=f"NOT COALESCE({_SETTLED_ROW}, false)",
)

# The items of run $1 whose price the run carried but did not send (`messages.withholds_price`),
# so that the next run neither counts that price as sent nor copies the item by its fingerprint.
# $2 their asset ids.
MARK_PRICES_WITHHELD = """
UPDATE feed_run_items SET price_withheld = true
WHERE run_id = $1 AND asset_id = ANY($2::text[]) AND price_amount IS NOT NULL
"""

# Whether the provider has a push accepted by $2 that the reconciler has not decided yet (one that
# was dead-lettered, its receipt noting why, never will be; index event_receipts_pending_pushes).
# $1 provider.
PUSH_UNDECIDED = """
SELECT EXISTS (SELECT 1 FROM event_receipts
               WHERE status = 'accepted' AND provider_id = $1 AND accepted_at <= $2
                 AND type <> 'price.updated' AND reason IS NULL)
"""

# Whether a later run of the run's feed read a newer snapshot (`SUPERSEDED`). $1 run.
RUN_SUPERSEDED = f"SELECT {SUPERSEDED} FROM feed_runs r WHERE r.run_id = $1"

# The provider's live assets (the deletion threshold's base). $1 provider.
COUNT_LIVE = "SELECT count(*) FROM asset_state WHERE provider_id = $1 AND NOT deleted"

# Drop staged snapshots nobody needs any more: keep this run's (when it ended ok or held), the
# feed's latest held run's (the only one that may still be decided) and its latest ok run's (the
# fingerprints of the next run). $1 feed.
FORGET_STAGED_ITEMS = f"""
DELETE FROM feed_run_items i
USING feed_runs d
WHERE i.run_id = d.run_id AND d.feed_id = $1
  AND d.run_id NOT IN (
      (SELECT run_id FROM feed_runs WHERE feed_id = $1 AND status = 'held'
       ORDER BY requested_at DESC LIMIT 1)
      UNION ALL
      ({LATEST_OK_RUN.format(feed="$1", also="")})
  )
"""

# Record how a run ended. Only the claimant may, and only while the run is still its own:
# running, or held with an approval it is applying. $1 run, $2 replica.
FINISH_RUN = """
UPDATE feed_runs
SET status = $3, reason = $4, reason_code = $5, counts = $6::jsonb, errors = $7::jsonb,
    compared_at = CASE WHEN $8::boolean THEN now() ELSE compared_at END,
    finished_at = now(),
    snapshot_time = COALESCE($9::timestamptz, snapshot_time),
    bytes = COALESCE($10::bigint, bytes),
    decoded_bytes = COALESCE($11::bigint, decoded_bytes),
    body_sha256 = COALESCE($12::bytea, body_sha256),
    etag = COALESCE($13::text, etag),
    last_modified = COALESCE($14::text, last_modified),
    staged_items = COALESCE($15::integer, staged_items),
    decision = NULL,
    claimed_until = NULL
WHERE run_id = $1 AND claimed_by = $2
  AND (status = 'running' OR (status = 'held' AND decision = 'approve'))
RETURNING run_id
"""
