"""Reading a fetched feed into the run's staging table, batch by batch, in bounded memory.

Each batch of raw records is looked up by fingerprint against the items of the feed's last `ok`
run that are still exactly what is stored: those need no validation, no hashing and no document
(the stored one is the same), and Postgres stages them from that run's rows in the same statement.
The rest are validated in worker processes (`validation`), a few batches at once while the loop
frames the next, and their normalised documents staged with COPY; invalid items that carry an id
are staged too, so they are never taken as missing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import asyncpg

from rwasync.feed_poller import queries
from rwasync.feed_poller.validation import ItemValidator
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
    # Invalid items whose id could not be read.
    unidentified: int = 0


class _Staging:
    """Counts and rows of one run's staging, settled batch by batch."""

    def __init__(self, conn: asyncpg.Connection, run_id: str, max_errors: int) -> None:
        self._conn = conn
        self._run_id = run_id
        self._max_errors = max_errors
        self.invalid = 0
        self.unidentified = 0
        self.skipped = 0
        self.errors: list[ItemError] = []

    async def stage_known(
        self, previous: str | None, provider_id: str, batch: list[RawRecord], max_item_bytes: int
    ) -> list[RawRecord]:
        """Stage the records known by fingerprint (in Postgres, from the previous run's rows);
        the rest, to validate. An item over `max_item_bytes` is never known: a copy accepted
        under a larger limit (or before there was one) must be found too large now, and one
        refused last time keeps being reported."""
        if previous is None:
            return batch
        candidates = [r for r in batch if not r.larger_than(max_item_bytes)]
        if not candidates:
            return batch
        staged = await self._conn.fetch(
            queries.STAGE_KNOWN_ITEMS,
            self._run_id,
            previous,
            provider_id,
            [r.fingerprint for r in candidates],
            [r.index for r in candidates],
        )
        if not staged:
            return batch
        self.skipped += len(staged)
        known = {row["item_index"] for row in staged}
        return [r for r in batch if r.index not in known]

    async def settle(self, validated: tuple[bytes, list[ItemError]]) -> None:
        """Stage a validated batch: COPY text data from the worker, and its invalid items."""
        data, invalid = validated
        self.invalid += len(invalid)
        self.unidentified += sum(1 for item in invalid if item.stored_id is None)
        self.errors.extend(invalid[: max(0, self._max_errors - len(self.errors))])
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

    Three things overlap: a thread frames the next batch while this one's known items are staged
    in Postgres, and the rest are validated in the background, a few batches at once
    (`validator`), staged as their results come in."""
    await conn.execute(queries.CLEAR_STAGED_ITEMS, run_id)
    previous = await conn.fetchval(queries.LAST_OK_STAGED_RUN, feed_id)
    now = utc_now()
    seen = 0
    staging = _Staging(conn, run_id, max_errors)
    # Enough batches in flight to keep every worker busy; bounded, so memory stays flat.
    depth = max(1, 2 * validator.workers)
    pending: deque[asyncio.Task[tuple[bytes, list[ItemError]]]] = deque()
    try:
        with downloaded.open_decoded() as stream:
            reader = read_records(fmt, stream)

            def frame(seen: int) -> asyncio.Task[list[RawRecord]]:
                return asyncio.create_task(
                    asyncio.to_thread(
                        take, reader.records, BATCH_ITEMS, seen=seen, max_items=max_items
                    )
                )

            framing = frame(0)
            try:
                while batch := await framing:
                    seen += len(batch)
                    framing = frame(seen)
                    misses = await staging.stage_known(
                        previous, provider_id, batch, validator.max_item_bytes
                    )
                    pending.append(asyncio.create_task(validator.validate(run_id, misses, now)))
                    while len(pending) > depth:
                        await staging.settle(await pending.popleft())
            finally:
                # The stream closes after this: never under a thread still framing.
                await asyncio.gather(framing, return_exceptions=True)
            while pending:
                await staging.settle(await pending.popleft())
            await conn.execute(queries.MARK_DUPLICATES, run_id)
            facts = feed_facts(
                reader.header,
                last_modified=downloaded.last_modified_at,
                fetched_at=downloaded.started_at,
                now=utc_now(),
            )
    finally:
        # A feed found broken (or a cancelled run) leaves batches in flight: stop waiting for them.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return StagedFeed(
        facts, seen, staging.invalid, staging.skipped, staging.errors, staging.unidentified
    )
