"""Accepted receipts of concurrent requests are written together (the platform's group commit
over `record_accepted_wire`, as ingest-api uses them), and every one of them lands."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from rwasync.platform.db import Database
from rwasync.platform.grouping import GroupCommit
from rwasync.schema.events import ReceiptStatus
from rwasync.schema.messages import wire_event
from rwasync.store import receipts
from tests.support.events import at, upserted

pytestmark = pytest.mark.integration


def receipt_recorder(db: Database) -> GroupCommit[Any]:
    async def record(events: list[Any]) -> None:
        await receipts.record_accepted_wire(db.pool, [wire_event(e) for e in events])

    return GroupCommit(record)


async def test_concurrent_receipts_all_land_in_a_few_shared_inserts(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[int] = []
    record_accepted = receipts.record_accepted_wire

    async def counting(conn: Any, events: Sequence[Any]) -> None:
        inserts.append(len(events))
        await record_accepted(conn, events)

    monkeypatch.setattr(receipts, "record_accepted_wire", counting)
    recorder = receipt_recorder(db)
    events = [upserted("prv_g", f"a{i}", at(i)) for i in range(200)]
    await asyncio.gather(*(recorder.submit([e]) for e in events))
    rows = await db.fetch("SELECT event_id, status FROM event_receipts")
    assert {r["event_id"] for r in rows} == {e.event_id for e in events}
    assert {r["status"] for r in rows} == {"accepted"}
    # Requests that arrive while an insert runs share the next one: the first insert carries the
    # first receipt alone, the second every one that queued meanwhile.
    assert sum(inserts) == 200
    assert len(inserts) <= 3, inserts


async def test_a_failed_insert_reaches_every_waiter(db: Database) -> None:
    recorder = receipt_recorder(db)
    await db.execute("ALTER TABLE event_receipts RENAME TO event_receipts_away")
    try:
        results = await asyncio.gather(
            *(recorder.submit([upserted("prv_g", f"b{i}", at(i))]) for i in range(5)),
            return_exceptions=True,
        )
    finally:
        await db.execute("ALTER TABLE event_receipts_away RENAME TO event_receipts")
    assert all(isinstance(r, Exception) for r in results)
    # The recorder carries on once the table is back.
    await recorder.submit([upserted("prv_g", "c", at(0))])
    assert await db.fetchval("SELECT count(*) FROM event_receipts") == 1


@pytest.mark.parametrize("form", ["events", "wire", "run", "in a transaction"])
async def test_accepted_receipts_leave_one_decided_first_as_it_is(db: Database, form: str) -> None:
    """ingest-api inserts its receipts plainly; a batch meeting one that the consumer recorded
    first (decided) is inserted again keeping that one: every other receipt still lands."""
    events = [upserted("prv_g", f"c{i}", at(i)) for i in range(5)]
    decided = receipts.Decision.of(events[2], ReceiptStatus.APPLIED)
    async with db.pool.acquire() as conn:
        await receipts.record_decisions(conn, [decided])
        if form == "events":
            await receipts.record_accepted(db.pool, events)
        elif form == "wire":
            await receipts.record_accepted_wire(db.pool, [wire_event(e) for e in events])
        elif form == "run":
            first = events[0].accepted_at
            run = receipts.AcceptedRun(
                provider_id="prv_g",
                type=str(events[0].type),
                trace_id="",
                first_accepted_at=first,
                event_ids=[e.event_id for e in events],
                asset_ids=[e.asset_id for e in events],
            )
            await receipts.record_accepted_run(db.pool, run)
        else:
            async with conn.transaction():
                await receipts.record_accepted(conn, events)
    rows = await db.fetch("SELECT event_id, status FROM event_receipts")
    statuses = {r["event_id"]: r["status"] for r in rows}
    assert statuses == {e.event_id: "applied" if e is events[2] else "accepted" for e in events}
