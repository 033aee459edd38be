"""Every SQL statement ingest-api runs. It reads credentials, asset state (through the
`asset_state` view, never the reconciler's table) and receipts; its only write is the `accepted`
receipt, run by `rwasync.platform.receipts.record_accepted` (RECORD_ACCEPTED below)."""

from typing import Final

from rwasync.platform import receipts

# A provider credential by its key id (HTTP Basic), usable only while neither it is revoked nor
# its provider disabled. The secret's digest is compared in Python, in constant time.
CREDENTIAL_BY_KEY_ID: Final = """
SELECT c.provider_id, c.key_id, c.secret_digest
FROM provider_credentials c
JOIN providers p ON p.provider_id = c.provider_id
WHERE c.key_id = $1
  AND (c.revoked_at IS NULL OR c.revoked_at > now())
  AND NOT p.disabled
"""

# A provider credential by the SHA-256 digest of its bearer token (the lookup is the comparison:
# an index probe on a digest leaks nothing about the token). Reader tokens live in `readers` and
# so never match here.
CREDENTIAL_BY_TOKEN_DIGEST: Final = """
SELECT c.provider_id, c.key_id
FROM provider_credentials c
JOIN providers p ON p.provider_id = c.provider_id
WHERE c.token_digest = $1
  AND (c.revoked_at IS NULL OR c.revoked_at > now())
  AND NOT p.disabled
"""

# One asset of one provider as the reconciler last applied it (tombstones included).
ASSET_STATE: Final = """
SELECT asset_id, document, updated_at, content_hash, deleted, applied_at
FROM asset_state
WHERE provider_id = $1 AND asset_id = $2
"""

# The receipt of one event, scoped to its provider (another provider's event reads as absent).
GET_RECEIPT: Final = receipts.GET_RECEIPT

# Recorded after the broker confirmed; see rwasync.platform.receipts.
RECORD_ACCEPTED: Final = receipts.RECORD_ACCEPTED
