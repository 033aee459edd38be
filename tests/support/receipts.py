"""Receipts written straight into the ledger, as of any moment, for tests of what reads or
prunes them."""

from __future__ import annotations

import uuid
from datetime import datetime

from rwasync.platform.db import Database


async def record(
    db: Database,
    provider_id: str,
    event_id: uuid.UUID,
    accepted_at: datetime,
    status: str = "applied",
    reason: str | None = None,
) -> uuid.UUID:
    await db.execute(
        """INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, reason,
                                       accepted_at, decided_at)
           VALUES ($1, $2, 'a1', 'asset.upserted', $3::text, $4, $5::timestamptz,
                   CASE WHEN $3::text <> 'accepted' THEN $5::timestamptz END)""",
        event_id,
        provider_id,
        status,
        reason,
        accepted_at,
    )
    return event_id
