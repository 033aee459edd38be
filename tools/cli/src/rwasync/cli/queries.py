"""Every SQL statement the operator CLI runs of its own. Statements it shares with a service
(feed requests, receipts) live in `rwasync.store`."""

from typing import Final

from rwasync.store.feeds import SUPERSEDED

CREATE_PROVIDER: Final = "INSERT INTO providers (provider_id, name) VALUES ($1, $2)"

CREATE_CREDENTIAL: Final = """
INSERT INTO provider_credentials (key_id, provider_id, secret_digest, token_digest)
VALUES ($1, $2, $3, $4)
"""

LIST_PROVIDERS: Final = """
SELECT provider_id, name, disabled, created_at FROM providers ORDER BY created_at
"""

SET_PROVIDER_DISABLED: Final = "UPDATE providers SET disabled = $2 WHERE provider_id = $1"
SET_PARTNER_DISABLED: Final = "UPDATE partners SET disabled = $2 WHERE partner_id = $1"

CREATE_READER: Final = "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, $2, $3)"
# The revocation instant, the first one's if the reader was revoked already (then before this
# transaction began: `already_revoked`); no row: unknown.
REVOKE_READER: Final = """
UPDATE readers SET revoked_at = coalesce(revoked_at, now()) WHERE reader_id = $1
RETURNING revoked_at, revoked_at < now() AS already_revoked
"""

LIST_READERS: Final = """
SELECT reader_id, name, created_at, revoked_at FROM readers ORDER BY created_at, reader_id
"""

# --- credentials and partners (rwasync.cli.credentials) ---

PROVIDER_EXISTS: Final = "SELECT EXISTS (SELECT 1 FROM providers WHERE provider_id = $1)"
PARTNER_EXISTS: Final = "SELECT EXISTS (SELECT 1 FROM partners WHERE partner_id = $1)"

CREATE_PARTNER_CREDENTIAL: Final = """
INSERT INTO provider_credentials (key_id, partner_id, secret_digest, token_digest)
VALUES ($1, $2, $3, $4)
"""

# The owner of a credential, and whether it still authenticates (or will until its revocation
# time); no row: unknown.
CREDENTIAL_OWNER: Final = """
SELECT provider_id, partner_id, revoked_at, revoked_at IS NULL OR revoked_at > now() AS live
FROM provider_credentials WHERE key_id = $1
"""

# Revoke now, or at a later time (an overlap); never move an earlier revocation later.
REVOKE_CREDENTIAL: Final = """
UPDATE provider_credentials
SET revoked_at = LEAST(COALESCE(revoked_at, 'infinity'::timestamptz), $2)
WHERE key_id = $1
RETURNING revoked_at
"""

LIST_CREDENTIALS: Final = """
SELECT key_id, provider_id, partner_id, created_at, revoked_at,
       revoked_at IS NULL OR revoked_at > now() AS live
FROM provider_credentials
WHERE provider_id = $1 OR partner_id = $1
ORDER BY created_at
"""

CREATE_PARTNER: Final = "INSERT INTO partners (partner_id, name) VALUES ($1, $2)"

GRANT_PARTNER: Final = """
INSERT INTO partner_providers (partner_id, provider_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING
"""

UNGRANT_PARTNER: Final = "DELETE FROM partner_providers WHERE partner_id = $1 AND provider_id = $2"

# Partners, oldest first, each with the providers it acts for (in the order they were granted).
LIST_PARTNERS: Final = """
SELECT p.partner_id, p.name, p.disabled, p.created_at,
       coalesce(array_agg(g.provider_id ORDER BY g.granted_at, g.provider_id)
                    FILTER (WHERE g.provider_id IS NOT NULL), '{}') AS providers
FROM partners p LEFT JOIN partner_providers g USING (partner_id)
GROUP BY p.partner_id
ORDER BY p.created_at, p.partner_id
"""

# --- provider request rate (rwasync provider rate) ---

SET_PROVIDER_RATE: Final = """
UPDATE providers SET rate_per_second = $2, rate_burst = $3 WHERE provider_id = $1
"""

# --- prices: sanity policies and held ticks ---------------------------------------------------

SET_PRICE_POLICY: Final = """
INSERT INTO price_policies (provider_id, max_jump, currency_check)
SELECT provider_id, $2, $3 FROM providers WHERE provider_id = $1
ON CONFLICT (provider_id) DO UPDATE
    SET max_jump = EXCLUDED.max_jump, currency_check = EXCLUDED.currency_check,
        updated_at = now()
RETURNING provider_id, max_jump, currency_check, updated_at
"""

# A provider's policy; no row at all: an unknown provider, `max_jump`/`currency_check` null: a
# provider no policy was ever set for.
PRICE_POLICY: Final = """
SELECT p.provider_id, pp.max_jump, coalesce(pp.currency_check, false) AS currency_check,
       pp.updated_at
FROM providers p LEFT JOIN price_policies pp USING (provider_id)
WHERE p.provider_id = $1
"""

# Every provider's policy as PRICE_POLICY reads one: those that hold ticks first (a jump check
# or the currency check on), then by provider.
PRICE_POLICIES: Final = """
SELECT p.provider_id, pp.max_jump, coalesce(pp.currency_check, false) AS currency_check,
       pp.updated_at
FROM providers p LEFT JOIN price_policies pp USING (provider_id)
ORDER BY (pp.max_jump IS NOT NULL OR coalesce(pp.currency_check, false)) DESC, p.provider_id
"""

LIST_HELD_PRICES: Final = """
SELECT event_id, provider_id, asset_id, amount, currency, as_of, accepted_at, hold_kind,
       hold_reason, held_at
FROM price_history
WHERE state = 'held' AND ($1::text IS NULL OR provider_id = $1)
ORDER BY held_at, provider_id, asset_id, as_of
LIMIT $2
"""

# Held ticks by event id (the ones still held: a tick replaced since is gone).
HELD_PRICES: Final = """
SELECT event_id, provider_id, asset_id, as_of
FROM price_history
WHERE state = 'held' AND event_id = ANY($1::uuid[])
"""

DECIDE_HELD_PRICES: Final = """
UPDATE price_history h SET state = $2
FROM unnest($1::uuid[]) AS e(event_id)
WHERE h.state = 'held' AND h.event_id = e.event_id
"""

# --- rwasync status (rwasync.cli.status) ---

# Events accepted but not yet decided, per type: the consumers' backlog. A dead-lettered event
# (undecided, with a reason) is counted under dead letters instead.
UNDECIDED_EVENTS: Final = """
SELECT type, count(*) AS events, min(accepted_at) AS oldest
FROM event_receipts WHERE status = 'accepted' AND reason IS NULL
GROUP BY type
"""

RECENT_FEED_RUNS: Final = """
SELECT run_id, feed_id, provider_id, status, reason_code, reason, trigger, requested_at,
       started_at, finished_at, counts
FROM feed_runs ORDER BY requested_at DESC LIMIT $1
"""

FEED_RUNS_SINCE: Final = """
SELECT status, count(*) AS runs FROM feed_runs WHERE requested_at > $1 GROUP BY status
"""

# Work only a feed-poller does, late: scheduled feeds past their next run, runs requested and
# not started, runs whose poller's lease ran out (nobody took them over). Read through the
# partial indexes `feed_sources_due` and `feed_runs_pending`.
POLLER_WORK_LATE: Final = """
SELECT
  (SELECT count(*) FROM feed_sources
   WHERE enabled AND (interval_seconds IS NOT NULL OR cron IS NOT NULL)
     AND next_run_at < $1) AS feeds_overdue,
  (SELECT min(next_run_at) FROM feed_sources
   WHERE enabled AND (interval_seconds IS NOT NULL OR cron IS NOT NULL)
     AND next_run_at < $1) AS oldest_due,
  (SELECT count(*) FROM feed_runs
   WHERE status = 'queued' AND requested_at < $1) AS runs_queued,
  (SELECT count(*) FROM feed_runs
   WHERE status = 'running' AND claimed_until < $1) AS runs_abandoned,
  (SELECT min(requested_at) FROM feed_runs
   WHERE status IN ('queued', 'running') AND requested_at < $1
     AND (status = 'queued' OR claimed_until < $1)) AS oldest_requested
"""

# Feed runs waiting for an operator's decision: each feed's latest held run, unless a later run
# read a newer snapshot (`SUPERSEDED`: it can no longer be applied) or someone already approved
# it (it stays `held` until a poller applies it), oldest first.
HELD_FEED_RUNS: Final = f"""
SELECT r.run_id, r.feed_id, r.provider_id, r.reason_code, r.finished_at AS held_at
FROM feed_runs r
WHERE r.status = 'held' AND r.decision IS NULL
  AND NOT EXISTS (SELECT 1 FROM feed_runs n
                  WHERE n.feed_id = r.feed_id AND n.status = 'held'
                    AND (n.requested_at, n.run_id) > (r.requested_at, r.run_id))
  AND NOT {SUPERSEDED}
ORDER BY r.finished_at
"""

# Held ticks per provider, from the partial index `price_history_held` (held rows only, however
# long the history): an index-only scan per partition.
HELD_PRICES_BY_PROVIDER: Final = """
SELECT provider_id, count(*) AS ticks, min(held_at) AS oldest
FROM price_history WHERE state = 'held' GROUP BY provider_id ORDER BY provider_id
"""

DEAD_LETTERS_BY_QUEUE: Final = """
SELECT queue, count(*) AS messages, min(dead_lettered_at) AS oldest,
       count(*) FILTER (WHERE dead_lettered_at > $1) AS recent
FROM dead_letters GROUP BY queue ORDER BY queue
"""
