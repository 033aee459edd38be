"""Receipt retention (`rwasync.store.receipts.prune_decided`) on real Postgres: which receipts
go, which stay, chunked and shared between pruners, and ids from before ids carried their time."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from rwasync.platform.db import Database
from rwasync.schema.event_ids import event_id_at, first_event_id_at, new_event_id
from rwasync.store import receipts
from tests.support.receipts import record

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
WEEK_AGO = NOW - timedelta(days=7)
OLD = NOW - timedelta(days=8)


def _version_4(first_bytes: bytes) -> uuid.UUID:
    """A version 4 id whose first bytes (a version 7 id's time) are `first_bytes`."""
    return uuid.UUID(bytes=first_bytes + os.urandom(16 - len(first_bytes)), version=4)


async def kept(db: Database) -> set[uuid.UUID]:
    return {r["event_id"] for r in await db.fetch("SELECT event_id FROM event_receipts")}


async def test_decided_receipts_older_than_the_cutoff_go_and_every_other_stays(
    db: Database, provider_id: str
) -> None:
    gone = {
        await record(db, provider_id, event_id_at(OLD), OLD, status)
        for status in ("applied", "stale_ignored", "duplicate", "rejected")
    }
    stays = {
        # not decided yet, dead-lettered, held: whatever their age
        await record(db, provider_id, event_id_at(OLD), OLD, "accepted"),
        await record(db, provider_id, event_id_at(OLD), OLD, "accepted", "poison"),
        await record(db, provider_id, event_id_at(OLD), OLD, "held", "jump"),
        # decided, but younger than the cutoff
        await record(db, provider_id, new_event_id(), NOW),
        await record(db, provider_id, event_id_at(WEEK_AGO + timedelta(minutes=1)), NOW),
    }
    # An id drawn long ago for an event accepted recently (a clock that was wrong) stays: the
    # acceptance decides, the id only finds.
    stays.add(await record(db, provider_id, event_id_at(OLD), NOW))

    assert await receipts.prune_decided(db.pool, WEEK_AGO) == len(gone)
    assert await kept(db) == stays
    assert await receipts.prune_decided(db.pool, WEEK_AGO) == 0


async def test_receipts_with_random_ids_from_before_time_ordered_ids_are_pruned_too(
    db: Database, provider_id: str
) -> None:
    # Version 4 ids read as drawn at any time from 1970 to the year 10889: those reading as in
    # the past fall in the first range, those reading as in the future in the second.
    # Random ones fall before 2026 only about once in 160: two of each kind are made to.
    legacy = [uuid.uuid4() for _ in range(400)]
    for at in (0, 1, 300, 301):
        legacy[at] = _version_4(bytes(6) if at % 2 == 0 else b"\xff" * 6)
    old = [await record(db, provider_id, i, OLD) for i in legacy[:300]]
    recent = [await record(db, provider_id, i, NOW) for i in legacy[300:]]
    assert any(i < first_event_id_at(NOW) for i in old)
    assert any(i > first_event_id_at(NOW + timedelta(days=1)) for i in old)

    assert await receipts.prune_decided(db.pool, WEEK_AGO) == 300
    assert await kept(db) == set(recent)


async def test_pruning_goes_chunk_by_chunk_within_its_budget(
    db: Database, provider_id: str
) -> None:
    ids = [event_id_at(OLD - timedelta(seconds=s)) for s in range(25)]
    old = [await record(db, provider_id, event_id, OLD) for event_id in ids]
    young = await record(db, provider_id, new_event_id(), NOW)
    # Undecided receipts among the old ones are stepped over, not counted against a chunk.
    undecided = await record(db, provider_id, event_id_at(OLD), OLD, "accepted")

    assert await receipts.prune_decided(db.pool, WEEK_AGO, chunk=4, chunks=3) == 12
    assert await receipts.prune_decided(db.pool, WEEK_AGO, chunk=4, chunks=3) == 12
    assert await receipts.prune_decided(db.pool, WEEK_AGO, chunk=4, chunks=3) == 1
    assert await kept(db) == {young, undecided}
    assert not set(old) & await kept(db)


async def test_pruners_at_once_share_the_work_and_remove_each_receipt_once(
    db: Database, provider_id: str
) -> None:
    await db.execute(
        """INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status,
                                       accepted_at, decided_at)
           SELECT e, $2, 'a1', 'price.updated', 'applied', $3, $3 FROM unnest($1::uuid[]) e""",
        [event_id_at(OLD - timedelta(milliseconds=ms)) for ms in range(3000)],
        provider_id,
        OLD,
    )
    removed = await asyncio.gather(
        *(receipts.prune_decided(db.pool, WEEK_AGO, chunk=50) for _ in range(3))
    )
    assert sum(removed) == 3000
    assert await kept(db) == set()
