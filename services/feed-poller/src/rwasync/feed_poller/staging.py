"""Reading a fetched feed into the run's staging table, batch by batch, in bounded memory.

Each batch of raw records is looked up by fingerprint against the items of the feed's last `ok`
run that are still exactly what is stored: those need no validation, no hashing and no document
(the stored one is the same). The rest are validated in worker processes (`validation`), a few
batches at once while the loop frames the next, and their normalised documents staged. All goes
in with COPY; invalid items that carry an id are staged too, so they are never taken as missing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from rwasync.feed_poller import queries
from rwasync.feed_poller.validation import ItemValidator, StagedRow
from rwasync.feeds.fetch import Downloaded
from rwasync.feeds.items import ItemError
from rwasync.feeds.reading import BATCH_ITEMS, FeedFacts, feed_facts, take
from rwasync.feeds.records import RawRecord, read_records
from rwasync.schema.timestamps import utc_now


@dataclass
class StagedFeed:
    """What reading the feed found; the items themselves are in `feed_run_items`."""

    facts: FeedFacts
    seen: int = 0
    invalid: int = 0
    skipped_validation: int = 0
    # The first `max_errors` invalid items, by index.
    errors: list[ItemError] = field(default_factory=list)


class _Staging:
    """Counts and rows of one run's staging, settled batch by batch in file order."""

    def __init__(self, conn: asyncpg.Connection, max_errors: int) -> None:
        self._conn = conn
        self._max_errors = max_errors
        self.invalid = 0
        self.skipped = 0
        self.errors: list[ItemError] = []

    async def settle(
        self, known: list[StagedRow], validated: tuple[bytes, list[ItemError]]
    ) -> None:
        """Stage a batch: the rows of the items `known` by fingerprint, then the validated ones
        (COPY text data from the worker)."""
        data, invalid = validated
        self.skipped += len(known)
        self.invalid += len(invalid)
        self.errors.extend(invalid[: max(0, self._max_errors - len(self.errors))])
        if known:
            await self._conn.copy_records_to_table(
                "feed_run_items", records=known, columns=queries.STAGED_COLUMNS
            )
        if data:
            # A memoryview: asyncpg would take plain bytes for a file's path.
            await self._conn.copy_to_table(
                "feed_run_items",
                source=memoryview(data),
                columns=queries.STAGED_COLUMNS,
                format="text",
            )


async def stage_feed(
    conn: asyncpg.Connection,
    *,
    run_id: str,
    feed_id: str,
    provider_id: str,
    fmt: str,
    downloaded: Downloaded,
    validator: ItemValidator,
    max_items: int,
    max_errors: int,
) -> StagedFeed:
    """Stage the downloaded feed for `run_id`; raises FeedInvalid when the feed is unusable.

    Batches are validated in the background, a few at once (`validator`), while the next are
    framed and looked up; they are staged in file order as their results come in."""
    await conn.execute(queries.CLEAR_STAGED_ITEMS, run_id)
    previous = await conn.fetchval(queries.LAST_OK_STAGED_RUN, feed_id)
    now = utc_now()
    seen = 0
    staging = _Staging(conn, max_errors)
    # Enough batches in flight to keep every worker busy; bounded, so memory stays flat.
    depth = max(1, 2 * validator.workers)
    pending: deque[tuple[list[StagedRow], asyncio.Task[tuple[bytes, list[ItemError]]]]]
    pending = deque()
    try:
        with downloaded.open_decoded() as stream:
            reader = read_records(fmt, stream)
            while True:
                batch = await asyncio.to_thread(
                    take, reader.records, BATCH_ITEMS, seen=seen, max_items=max_items
                )
                if not batch:
                    break
                seen += len(batch)
                known = await _known(conn, previous, provider_id, batch)
                misses = [r for r in batch if r.fingerprint not in known]
                rows: list[StagedRow] = [
                    (run_id, asset_id, record.index, True, record.fingerprint, updated_at,
                     content_hash) + (None,) * 4
                    for record in batch
                    if record.fingerprint in known
                    for asset_id, updated_at, content_hash in (known[record.fingerprint],)
                ]  # fmt: skip
                pending.append((rows, asyncio.create_task(validator.validate(run_id, misses, now))))
                while len(pending) > depth:
                    rows, task = pending.popleft()
                    await staging.settle(rows, await task)
            while pending:
                rows, task = pending.popleft()
                await staging.settle(rows, await task)
            facts = feed_facts(
                reader.header,
                last_modified=downloaded.last_modified_at,
                fetched_at=downloaded.started_at,
                now=utc_now(),
            )
    finally:
        # A feed found broken (or a cancelled run) leaves batches in flight: stop waiting for them.
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
    return StagedFeed(facts, seen, staging.invalid, staging.skipped, staging.errors)


async def _known(
    conn: asyncpg.Connection, previous: str | None, provider_id: str, batch: list[RawRecord]
) -> dict[bytes, tuple[str, datetime, bytes]]:
    if previous is None:
        return {}
    rows = await conn.fetch(
        queries.KNOWN_FINGERPRINTS, previous, provider_id, [r.fingerprint for r in batch]
    )
    return {
        bytes(row["fingerprint"]): (row["asset_id"], row["updated_at"], bytes(row["content_hash"]))
        for row in rows
    }
