"""Validating a run's new or changed items in worker processes, into rows of its staging table.

Validation is pure CPU per item (the asset schema's validators, the normalised dump, canonical
JSON), so threads would only queue on the GIL; worker processes use every core, and the event
loop keeps framing, looking up and staging the next batches meanwhile. What crosses between the
processes is cheap to pickle: a record's fields as a plain tuple in, and out the batch's staging
rows as one piece of COPY text data, which the event loop hands to Postgres as it is. (Pickling
the validated items as dataclasses took a third of the workers' time, and encoding their rows
for COPY was the event loop's.) With `workers` 0 the items are validated in a thread of this
process instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, Final

import structlog

from rwasync.feeds.items import ItemError, ValidItem, validate_record
from rwasync.feeds.records import RawRecord
from rwasync.platform.orphans import when_parent_gone

log = structlog.get_logger(__name__)


def record_fields(record: RawRecord) -> tuple[Any, ...]:
    """`record` as the plain tuple a worker rebuilds it from (`RawRecord(*fields)`)."""
    return (
        record.index, record.fingerprint, record.raw_id, record.text, record.line, record.row,
        record.columns,
    )  # fmt: skip


def _bytea(value: bytes) -> str:
    # Hex input (`\x…`), its backslash doubled for COPY's text format.
    return "\\\\x" + value.hex()


_CONTROL: Final = bytes(range(0x20)) + b"\x7f"


def _document_bytea(value: bytes) -> str:
    """A document as bytea input for COPY's text format: printable ASCII, as most canonical JSON
    is, in bytea's escape format (every backslash doubled for bytea, then again for COPY, so the
    text can never start as hex input does); anything else as hex. Half the bytes of hex to
    carry back from the worker, and Postgres reads a staged row in 9.5-15 us of CPU instead of
    23 (20,000 of the benchmark's rows)."""
    if value.isascii() and len(value.translate(None, _CONTROL)) == len(value):
        return value.decode("ascii").replace("\\", "\\\\\\\\")
    return _bytea(value)


def copy_line(run_id: str, item: ValidItem | ItemError) -> str | None:
    """The staging row of a validated item as a line of COPY's text format (columns
    `queries.STAGED_COLUMNS`); None for an invalid item without a plausible id. Only the document
    needs escaping (`_document_bytea`): ids match the asset id rule (`ASSET_ID`), run ids are
    ours, other bytea is hex, currencies are ISO codes, numbers and timestamps are plain text."""
    if isinstance(item, ItemError):
        # Only an invalid item whose id could be a stored asset's is worth staging.
        if item.stored_id is None:
            return None
        return f"{run_id}\t{item.stored_id}\t{item.index}\tf{_NO_VALUES}\n"
    price = item.price
    priced = (
        f"{price.amount}\t{price.currency}\t"
        + (price.as_of.isoformat() if price.as_of is not None else _NULL)
        if price is not None
        else f"{_NULL}\t{_NULL}\t{_NULL}"
    )
    return (
        f"{run_id}\t{item.asset_id}\t{item.index}\tt\t{_bytea(item.fingerprint)}\t"
        f"{item.updated_at.isoformat()}\t{_bytea(item.content_hash)}\t"
        f"{_document_bytea(item.document)}\t{priced}\n"
    )


_NULL: Final = "\\N"
_NO_VALUES: Final = f"\t{_NULL}" * 7


def validate_batch(
    run_id: str, records: Sequence[tuple[Any, ...]], now: datetime, max_item_bytes: int
) -> tuple[bytes, list[ItemError]]:
    """Validate `records` (as `record_fields` gives them; items over `max_item_bytes` are
    invalid): their staging rows as COPY text data, and the invalid items in record order."""
    lines: list[str] = []
    errors: list[ItemError] = []
    for fields in records:
        result = validate_record(RawRecord(*fields), now=now, max_item_bytes=max_item_bytes)
        if isinstance(result, ItemError):
            errors.append(result)
        line = copy_line(run_id, result)
        if line is not None:
            lines.append(line)
    return "".join(lines).encode(), errors


def _ready(poller_pid: int) -> None:
    """Each worker's initializer: to call it, the worker imports this module, and with it the
    rules; then it exits once its poller is gone (`platform.orphans`)."""
    when_parent_gone(poller_pid, lambda: os._exit(0), name="poller-watch")


def _warm() -> None:
    """A task that only makes the pool spawn a worker (which runs `_ready` first)."""


class ItemValidator:
    """A pool of `workers` processes kept for the service's life, started by `start` (or on
    first use); an item over `max_item_bytes` is invalid."""

    def __init__(self, workers: int, max_item_bytes: int) -> None:
        self.workers = workers
        self.max_item_bytes = max_item_bytes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers now, so that a run does not wait for them: a spawned worker takes
        about half a second of CPU to import the rules, which the first run would otherwise pay.
        A worker is spawned per task submitted while none is idle, so `workers` tasks start all
        of them; each imports the rules before its first task (`_ready`)."""
        if self.workers == 0:
            return
        pool = self._started()
        for _ in range(self.workers):
            pool.submit(_warm)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Spawned, not forked: a fork of a process with an event loop, threads and open
            # sockets copies them all into the child.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ready,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def validate(
        self, run_id: str, records: Sequence[RawRecord], now: datetime
    ) -> tuple[bytes, list[ItemError]]:
        """`validate_batch` of `records`, in a worker."""
        if not records:
            return b"", []
        fields = [record_fields(record) for record in records]
        if self.workers == 0:
            return await asyncio.to_thread(validate_batch, run_id, fields, now, self.max_item_bytes)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._started(), validate_batch, run_id, fields, now, self.max_item_bytes
            )
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
