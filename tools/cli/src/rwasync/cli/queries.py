"""Every SQL statement the operator CLI runs of its own. Statements it shares with a service
(feed requests, receipts) live in `rwasync.store`."""

from typing import Final

CREATE_PROVIDER: Final = "INSERT INTO providers (provider_id, name) VALUES ($1, $2)"

CREATE_CREDENTIAL: Final = """
INSERT INTO provider_credentials (key_id, provider_id, secret_digest, token_digest)
VALUES ($1, $2, $3, $4)
"""

LIST_PROVIDERS: Final = """
SELECT provider_id, name, disabled, created_at FROM providers ORDER BY created_at
"""

DISABLE_PROVIDER: Final = "UPDATE providers SET disabled = true WHERE provider_id = $1"

CREATE_READER: Final = "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, $2, $3)"

# --- prices: sanity policies and held ticks ---------------------------------------------------

SET_PRICE_POLICY: Final = """
INSERT INTO price_policies (provider_id, max_jump, currency_check)
SELECT provider_id, $2, $3 FROM providers WHERE provider_id = $1
ON CONFLICT (provider_id) DO UPDATE
    SET max_jump = EXCLUDED.max_jump, currency_check = EXCLUDED.currency_check,
        updated_at = now()
RETURNING provider_id, max_jump, currency_check, updated_at
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
