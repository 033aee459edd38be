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
