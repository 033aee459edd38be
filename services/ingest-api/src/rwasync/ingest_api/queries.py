"""Every SQL statement ingest-api runs of its own. It reads asset state through the
`asset_state` view (never the reconciler's table); credentials and receipts, which it shares with
other processes, are read and written through `rwasync.store`."""

from typing import Final

# One asset of one provider as the reconciler last applied it (tombstones included).
ASSET_STATE: Final = """
SELECT asset_id, document, updated_at, content_hash, deleted, applied_at
FROM asset_state
WHERE provider_id = $1 AND asset_id = $2
"""
