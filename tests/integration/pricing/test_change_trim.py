"""The price change log's trim against the real database: changes leave in stream order, and
only below the first change still young, so every change kept lies after the trim point (a
resume from it is served) and none younger than the retention is removed."""

from __future__ import annotations

import pytest

from rwasync.platform.db import Database
from rwasync.pricing.upkeep import Upkeep

pytestmark = pytest.mark.integration

# (xid, change_id, age in seconds): `changed_at` is a transaction's start, so a later id can
# carry an older stamp (a long transaction that started earlier).
CHANGES = [
    (100, 1, 7200),
    (101, 2, 7100),
    (102, 3, 60),  # young: it and everything after it stay
    (103, 4, 7300),  # old, but after a young change: removing it would put the trim point past 102
    (104, 5, 30),
]


async def test_changes_leave_in_stream_order_and_only_below_the_first_young_one(
    db: Database,
) -> None:
    for xid, change_id, age in CHANGES:
        await db.execute(
            """INSERT INTO price_changes (xid, change_id, provider_id, asset_id, amount, currency,
                                          as_of, accepted_at, changed_at)
               OVERRIDING SYSTEM VALUE
               VALUES ($1, $2, 'p', 'a', 1, 'USD', now(), now(),
                       now() - make_interval(secs => $3))""",
            xid,
            change_id,
            float(age),
        )
    await Upkeep(db, change_retention_seconds=3600).once()
    kept = [tuple(r) for r in await db.fetch("SELECT xid, change_id FROM price_changes ORDER BY 1")]
    trim = tuple(await db.fetchrow("SELECT xid, change_id FROM price_change_trim"))
    assert kept == [(102, 3), (103, 4), (104, 5)]
    assert trim == (101, 2)
    assert all(position > trim for position in kept)
