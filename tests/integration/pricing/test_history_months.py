"""Dropping a month of price history (`price_history_drop_month`, the README's retention step)
against the real database: the month's ticks go wherever they are kept, in a partition of
their own or in the default partition (a backfilled month older than the partitions pricing
keeps), and the answer says how many went."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rwasync.platform.db import Database

pytestmark = pytest.mark.integration


async def tick(db: Database, asset_id: str, as_of: datetime) -> None:
    await db.execute(
        """INSERT INTO price_history (provider_id, asset_id, as_of, amount, currency,
                                      accepted_at, event_id)
           VALUES ('prv_test', $1, $2, 1, 'USD', now(), gen_random_uuid())""",
        asset_id,
        as_of,
    )


async def ticks(db: Database, month: datetime) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM price_history WHERE date_trunc('month', as_of, 'UTC') = $1",
            month,
        )
    )


async def test_a_month_is_dropped_wherever_its_ticks_are(db: Database) -> None:
    await db.execute("SELECT price_history_ensure_months(1, 3)")
    backfilled = datetime(2020, 3, 1, tzinfo=UTC)  # no partition: the default one holds it
    current = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for day in (1, 15, 31):
        await tick(db, "a1", backfilled.replace(day=day, hour=23))
    await tick(db, "a1", datetime(2020, 4, 1, tzinfo=UTC))  # the next month stays
    await tick(db, "a1", datetime(2020, 2, 29, 23, 59, tzinfo=UTC))  # and the one before
    for hour in (1, 2):
        await tick(db, "a1", current.replace(hour=hour))

    assert await db.fetchval("SELECT price_history_drop_month('2020-03-20')") == 3
    assert await ticks(db, backfilled) == 0
    assert await db.fetchval("SELECT count(*) FROM price_history") == 4
    assert await db.fetchval("SELECT price_history_drop_month($1)", current.date()) == 2
    assert await ticks(db, current) == 0
    partition = "price_history_" + current.strftime("%Y_%m")
    assert await db.fetchval("SELECT to_regclass($1)", partition) is None
    assert await db.fetchval("SELECT price_history_drop_month('2019-01-01')") == 0
