"""Receipts written straight into the ledger, as of any moment, for tests of what reads or
prunes them."""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from rwasync.platform.db import Database
from rwasync.schema.events import first_event_id_at


def drawn_at(instant: datetime) -> uuid.UUID:
    """An event id as `new_event_id` would have drawn it at `instant`."""
    random = int.from_bytes(os.urandom(10))
    return uuid.UUID(
        int=first_event_id_at(instant).int
        | (0x7 << 76)
        | ((random >> 62 & 0xFFF) << 64)
        | (0b10 << 62)
        | (random & ((1 << 62) - 1))
    )


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
