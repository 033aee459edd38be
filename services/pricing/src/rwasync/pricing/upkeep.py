"""Housekeeping every pricing replica runs (each step is safe to run on several at once): the
monthly history partitions around now, and trimming the stream's change log to its retention."""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from rwasync.platform.db import Database
from rwasync.platform.tasks import cancel_and_wait
from rwasync.pricing import queries

log = structlog.get_logger(__name__)

EVERY: Final = 600.0
# History months kept ready: one before the current, three after.
MONTHS_BACK: Final = 1
MONTHS_AHEAD: Final = 3
TRIM_CHUNK: Final = 10000


class Upkeep:
    def __init__(self, db: Database, *, change_retention_seconds: float) -> None:
        self._db = db
        self._retention = change_retention_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pricing-upkeep")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        await self._db.wait_connected()
        while True:
            try:
                await self.once()
            except Exception as exc:  # tried again at the next round
                log.warning("pricing upkeep failed", error=repr(exc))
            await asyncio.sleep(EVERY)

    async def once(self) -> None:
        added = await self._db.fetchval(queries.ENSURE_MONTHS, MONTHS_BACK, MONTHS_AHEAD)
        if added:
            log.info("price history months added", added=added)
        while (
            await self._db.fetchval(queries.TRIM_CHANGES, self._retention, TRIM_CHUNK) == TRIM_CHUNK
        ):
            pass
