"""Every SQL statement the feed poller runs.

Runs move queued → running (claimed) → ok | not_modified | held | failed; a held run an operator
approved is claimed again while it stays `held` with `decision = 'approve'`. A claim is a lease
(`claimed_by`, `claimed_until`) renewed while the run works, so that replicas never run one run
twice and the runs of a replica that died go back to the queue. Runs of one feed never overlap:
a claim locks the feed's row too (so two replicas cannot both pass the "feed not busy" test) and
skips feeds with a run in progress. Row locks are NO KEY UPDATE so that inserting runs (a foreign
key share lock on the feed) never waits for a claim.
"""

# Feeds whose time has come get a queued run and their next time (interval + up to 10 % jitter),
# in one statement: SKIP LOCKED lets replicas schedule side by side without doubling a run. A
# feed that still has a queued run gets no second one (its schedule still moves on).
SCHEDULE_DUE_FEEDS = """
WITH due AS (
    SELECT feed_id
    FROM feed_sources
    WHERE enabled AND interval_seconds IS NOT NULL AND next_run_at <= now()
    ORDER BY next_run_at
    LIMIT 100
    FOR NO KEY UPDATE SKIP LOCKED
),
advanced AS (
    UPDATE feed_sources f
    SET next_run_at = now() + make_interval(secs => f.interval_seconds * (1 + random() * 0.1))
    FROM due
    WHERE f.feed_id = due.feed_id
    RETURNING f.feed_id, f.provider_id
)
INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger)
SELECT 'run_' || substr(md5(gen_random_uuid()::text), 1, 16), a.feed_id, a.provider_id,
       'queued', 'schedule'
FROM advanced a
WHERE NOT EXISTS (
    SELECT 1 FROM feed_runs q WHERE q.feed_id = a.feed_id AND q.status = 'queued'
)
RETURNING run_id, feed_id
"""

# What a claimed run needs to execute, returned by both claims.
_CLAIMED_COLUMNS = """
    r.run_id, r.feed_id, r.provider_id, r.trigger, r.started_at, r.held_body,
    f.url, f.format, f.deletion_threshold_percent, f.deletion_threshold_min_count,
    f.created_at AS feed_created_at
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

# Claim the oldest queued run: $1 replica, $2 lease seconds.
CLAIM_QUEUED_RUN = f"""
UPDATE feed_runs r
SET status = 'running', started_at = now(), claimed_by = $1,
    claimed_until = now() + make_interval(secs => $2)
FROM feed_sources f
WHERE f.feed_id = r.feed_id
  AND r.run_id = (
      SELECT q.run_id
      FROM feed_runs q JOIN feed_sources s ON s.feed_id = q.feed_id
      WHERE q.status = 'queued' AND NOT {_FEED_BUSY}
      ORDER BY q.requested_at, q.run_id
      LIMIT 1
      FOR NO KEY UPDATE OF q, s SKIP LOCKED
  )
RETURNING {_CLAIMED_COLUMNS}
"""

# Claim the oldest approved held run not under a live lease: $1 replica, $2 lease seconds.
CLAIM_APPROVED_RUN = f"""
UPDATE feed_runs r
SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
FROM feed_sources f
WHERE f.feed_id = r.feed_id
  AND r.run_id = (
      SELECT q.run_id
      FROM feed_runs q JOIN feed_sources s ON s.feed_id = q.feed_id
      WHERE q.status = 'held' AND q.decision = 'approve'
        AND (q.claimed_until IS NULL OR q.claimed_until < now())
        AND NOT {_FEED_BUSY}
      ORDER BY q.requested_at, q.run_id
      LIMIT 1
      FOR NO KEY UPDATE OF q, s SKIP LOCKED
  )
RETURNING {_CLAIMED_COLUMNS}
"""

# Keep this replica's claims alive: $1 run ids, $2 replica, $3 lease seconds.
RENEW_LEASES = """
UPDATE feed_runs SET claimed_until = now() + make_interval(secs => $3)
WHERE run_id = ANY($1::text[]) AND claimed_by = $2
"""

# Runs whose replica stopped renewing its lease (it died): back to the queue. Approvals need no
# reset: an expired lease makes them claimable again.
RECOVER_EXPIRED_RUNS = """
UPDATE feed_runs
SET status = 'queued', started_at = NULL, claimed_by = NULL, claimed_until = NULL
WHERE status = 'running' AND claimed_until < now()
RETURNING run_id, feed_id
"""

# On shutdown, hand this replica's unfinished runs back at once: $1 run ids, $2 replica.
RELEASE_RUNS = """
UPDATE feed_runs
SET status = CASE WHEN status = 'running' THEN 'queued' ELSE status END,
    started_at = CASE WHEN status = 'running' THEN NULL ELSE started_at END,
    claimed_by = NULL, claimed_until = NULL
WHERE run_id = ANY($1::text[]) AND claimed_by = $2 AND status IN ('running', 'held')
"""

# The body digest of the feed's last `ok` run: an identical body is `not_modified`.
LAST_OK_BODY_SHA256 = """
SELECT body_sha256 FROM feed_runs
WHERE feed_id = $1 AND status = 'ok' AND body_sha256 IS NOT NULL
ORDER BY finished_at DESC NULLS LAST
LIMIT 1
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

# The provider's stored assets, read through the reconciler's documented view.
STORED_STATE = """
SELECT asset_id, updated_at, deleted, accepted_at, event_id, source, content_hash
FROM asset_state
WHERE provider_id = $1
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
    body_sha256 = COALESCE($11::bytea, body_sha256),
    held_body = $12::bytea,
    decision = NULL,
    claimed_until = NULL
WHERE run_id = $1 AND claimed_by = $2
  AND (status = 'running' OR (status = 'held' AND decision = 'approve'))
RETURNING run_id
"""
