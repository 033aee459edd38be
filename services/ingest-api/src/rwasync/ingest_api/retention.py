"""Receipts are kept for a retention period after their event was accepted, then forgotten: a
`GET /v1/events/{event_id}` of one is a 404 from then on. Without it the ledger, one row for every
event and price tick ever accepted, would grow for as long as the system runs. A receipt not
decided yet (or dead-lettered) and a held price's are kept whatever their age; the assets, prices
and change entries the events made are not touched.

Every ingest-api process prunes: their chunks skip each other's rows (`store.receipts`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from prometheus_client import Counter

from rwasync.platform.db import Database
from rwasync.store import receipts

log = structlog.get_logger(__name__)

PRUNED = Counter("rwasync_receipts_pruned_total", "Decided receipts removed by retention")
PRUNE_EVERY: Final = 60.0
# Receipts one round removes at most; a round that removed this many goes on at once.
CHUNK: Final = 5000
CHUNKS: Final = 100
HOUR: Final = timedelta(hours=1)


async def prune_receipts_forever(db: Database, retention: timedelta) -> None:
    await db.wait_connected()
    while True:
        removed = 0
        try:
            removed = await receipts.prune_decided(
                db.pool, datetime.now(UTC) - retention, chunk=CHUNK, chunks=CHUNKS
            )
            PRUNED.inc(removed)
            if removed:
                log.info("receipts pruned", removed=removed, retention_hours=retention / HOUR)
        except Exception as exc:  # the next round tries again
            log.warning("receipts not pruned", error=repr(exc))
        if removed < CHUNK * CHUNKS:
            await asyncio.sleep(PRUNE_EVERY)
