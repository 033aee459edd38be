"""Every SQL statement ingest-api runs of its own. It reads asset state through the
`asset_state` view (never the reconciler's table); credentials and receipts, which it shares with
other processes, are read and written through `rwasync.store`."""

from typing import Final

from rwasync.store.catalog import within_page_budget

# One asset of one provider as the reconciler last applied it (tombstones included).
ASSET_STATE: Final = """
SELECT asset_id, document, updated_at, content_hash, deleted, applied_at
FROM asset_state
WHERE provider_id = $1 AND asset_id = $2
"""

# A page of the provider's assets in id order, after the cursor's id (keyset paging: a page
# boundary is a position in the id order, so writes going on never make a page skip or repeat
# an asset). Filters: status ($3, NULL = any), updated_since ($4), include_deleted ($5); at most
# $6 rows and about $7 bytes of documents (`within_page_budget`).
LIST_ASSETS: Final = within_page_budget(
    """
SELECT asset_id, document, updated_at, content_hash, deleted, applied_at
FROM asset_state
WHERE provider_id = $1
  AND asset_id > $2
  AND ($3::text IS NULL OR status = $3)
  AND ($4::timestamptz IS NULL OR updated_at >= $4)
  AND ($5 OR NOT deleted)
ORDER BY asset_id
LIMIT $6""",
    columns="asset_id, updated_at, content_hash, deleted, applied_at",
    order="asset_id",
    budget="$7",
)

# The operator's request rate for a provider (NULL columns: the service default).
PROVIDER_RATE: Final = """
SELECT rate_per_second, rate_burst FROM providers WHERE provider_id = $1
"""

# --- idempotency keys ---

# Claim a key for this request, under the claim's own id ($5): a new key, or one whose claim
# was abandoned (no answer within the lease). Returns true when claimed.
CLAIM_KEY: Final = """
INSERT INTO idempotency_keys AS k (provider_id, idempotency_key, fingerprint, claim_id)
VALUES ($1, $2, $3, $5)
ON CONFLICT (provider_id, idempotency_key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, claim_id = EXCLUDED.claim_id, claimed_at = now()
    WHERE k.status IS NULL AND k.claimed_at < now() - $4::interval
RETURNING true
"""

KEY_STATE: Final = """
SELECT fingerprint, status, body, location
FROM idempotency_keys WHERE provider_id = $1 AND idempotency_key = $2
"""

# The answer is stored, and the key given back, only by the request whose claim holds the key
# ($3 below, $6 here): one whose claim was taken over after the lease touches nothing.
STORE_ANSWER: Final = """
UPDATE idempotency_keys
SET status = $3, body = $4, location = $5, answered_at = now()
WHERE provider_id = $1 AND idempotency_key = $2 AND claim_id = $6 AND status IS NULL
"""

# A failed request gives its key back (only its own claim, never an answered key).
RELEASE_KEY: Final = """
DELETE FROM idempotency_keys
WHERE provider_id = $1 AND idempotency_key = $2 AND claim_id = $3 AND status IS NULL
"""

# A request still running keeps its claim from being taken over as abandoned.
RENEW_CLAIM: Final = """
UPDATE idempotency_keys SET claimed_at = now()
WHERE provider_id = $1 AND idempotency_key = $2 AND claim_id = $3 AND status IS NULL
"""

PRUNE_KEYS: Final = """
DELETE FROM idempotency_keys WHERE claimed_at < now() - $1::interval
"""
