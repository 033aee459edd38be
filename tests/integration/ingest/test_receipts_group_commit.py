"""Accepted receipts of concurrent requests are written together, and every one of them lands."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from rwasync.ingest_api.acceptance import AcceptedReceipts
from rwasync.platform.db import Database
from rwasync.store import receipts
from tests.support.events import at, upserted

pytestmark = pytest.mark.integration


async def test_concurrent_receipts_all_land_in_a_few_shared_inserts(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[int] = []
    record_accepted = receipts.record_accepted

    async def counting(conn: Any, events: Sequence[Any]) -> None:
        inserts.append(len(events))
        await record_accepted(conn, events)

    monkeypatch.setattr(receipts, "record_accepted", counting)
    recorder = AcceptedReceipts(db)
    events = [upserted("prv_g", f"a{i}", at(i)) for i in range(200)]
    await asyncio.gather(*(recorder.record([e]) for e in events))
    rows = await db.fetch("SELECT event_id, status FROM event_receipts")
    assert {r["event_id"] for r in rows} == {e.event_id for e in events}
    assert {r["status"] for r in rows} == {"accepted"}
    # Requests that arrive while an insert runs share the next one: the first insert carries the
    # first receipt alone, the second every one that queued meanwhile.
    assert sum(inserts) == 200
    assert len(inserts) <= 3, inserts


async def test_a_failed_insert_reaches_every_waiter(db: Database) -> None:
    recorder = AcceptedReceipts(db)
    await db.execute("ALTER TABLE event_receipts RENAME TO event_receipts_away")
    try:
        results = await asyncio.gather(
            *(recorder.record([upserted("prv_g", f"b{i}", at(i))]) for i in range(5)),
            return_exceptions=True,
        )
    finally:
        await db.execute("ALTER TABLE event_receipts_away RENAME TO event_receipts")
    assert all(isinstance(r, Exception) for r in results)
    # The recorder carries on once the table is back.
    await recorder.record([upserted("prv_g", "c", at(0))])
    assert await db.fetchval("SELECT count(*) FROM event_receipts") == 1
