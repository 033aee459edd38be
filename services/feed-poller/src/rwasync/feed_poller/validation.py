"""Validating a run's new or changed items in worker processes.

Validation is pure CPU per item (the asset schema's validators, the normalised dump, canonical
JSON), so threads would only queue on the GIL; worker processes use every core, and the event
loop keeps framing, looking up and staging the next batches meanwhile. Records and results
pickle small (an item's text in, its canonical document out). With `workers` 0 the items are
validated in a thread of this process instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

import structlog

from rwasync.feeds.items import ItemError, ValidItem
from rwasync.feeds.reading import validate_records
from rwasync.feeds.records import RawRecord

log = structlog.get_logger(__name__)


class ItemValidator:
    """A pool of `workers` processes, started on first use and kept for the service's life."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def validate(
        self, records: Sequence[RawRecord], now: datetime
    ) -> list[ValidItem | ItemError]:
        if not records:
            return []
        if self.workers == 0:
            return await asyncio.to_thread(validate_records, records, now)
        if self._pool is None:
            # Spawned, not forked: a fork of a process with an event loop, threads and open
            # sockets copies them all into the child.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, validate_records, records, now)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this run fails, the next gets a new pool.
            log.error("a validation worker died; the pool is replaced")
            self._drop()
            raise

    def _drop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._drop()
