"""The portal's reads in the store: the catalogue across providers, and the change feed, which
hands out every entry once, in order, even when transactions commit out of id order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import orjson
import pytest

from rwasync.platform.db import Database, LockSpace, connect, lock_stripes
from rwasync.reconciler.apply import ASSET_LOCK_STRIPES, AssetApplier
from rwasync.reconciler.relay import prune
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.catalog import (
    CHANGE_CURSOR,
    CHANGES_AFTER,
    CatalogRequestInvalid,
    ChangePosition,
    CursorExpired,
    change_cursor,
    list_catalog,
    read_changes,
)
from tests.support.events import at, deleted, upserted
from tests.support.locks import stripe_waiter
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

INSERT_ENTRY = """
INSERT INTO asset_changes (event_id, event_type, source, provider_id, asset_id, updated_at,
                           deleted, after_hash)
VALUES ($1, 'asset.upserted', 'push', 'prv_test', $2, now(), false, '\\x00')
"""
# Enough stripes that the test's few keys never share one (only the key space matters here).
TEST_STRIPES = 1_000_003


async def write_entry(conn: asyncpg.Connection, event_id: uuid.UUID, asset_id: str) -> None:
    """As the reconciler writes: its asset stripe lock first (the feed's horizon is read off
    these locks), then the entry."""
    await lock_stripes(conn, [f"prv_test/{asset_id}"], LockSpace.ASSETS, TEST_STRIPES)
    await conn.execute(INSERT_ENTRY, event_id, asset_id)


async def _read_until(db: Database, since: str | None, count: int) -> list[dict[str, object]]:
    """Follow the feed from `since` until `count` entries came. Entries are handed out once no
    writer could still commit one before them: wait for them, never assume."""
    items: list[dict[str, object]] = []

    async def more() -> int:
        nonlocal since
        page = await read_changes(db.pool, since, limit=7)
        items.extend(page["items"])
        since = page["next_cursor"]
        return len(items)

    await eventually(more, lambda n: n >= count, interval=0.02, what=f"{count} entries")
    return items


async def test_an_entry_committing_late_is_neither_skipped_nor_repeated(
    db: Database, database_url: str, provider_id: str
) -> None:
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        early, late = uuid.uuid4(), uuid.uuid4()
        t1 = first.transaction()
        await t1.start()
        await write_entry(first, early, "a1")  # the lower transaction id...
        async with second.transaction():
            await write_entry(second, late, "a2")  # ...commits after the higher one
        page = await read_changes(db.pool, None)
        assert page["items"] == []  # a1's transaction may still add an entry before a2's
        cursor = page["next_cursor"]
        await t1.commit()
        items = await _read_until(db, cursor, 2)
        assert [i["event_id"] for i in items] == [str(early), str(late)]
    finally:
        await first.close()
        await second.close()


async def test_a_batch_waiting_for_its_stripes_has_no_transaction_id_yet(
    db: Database, database_url: str, provider_id: str
) -> None:
    """Change entries are ordered by transaction id, which matches the order in which one
    asset's changes were applied only if a batch gets its id (its first write) after it took
    its stripes. A batch that staged first (an earlier attempt to shorten the time stripes are
    held) got its id before a batch that overtook it on the stripe: the fault suite then saw an
    asset's last entry differ from its stored state. So: while waiting, no id; a later batch
    of another asset is handed out first, in commit order."""
    holder = await asyncpg.connect(database_url)
    try:
        # Another asset of a stripe other than b1's, as lock_stripes hashes them.
        stripes = await holder.fetch(
            "SELECT k, (hashtext(k) & 2147483647) % $2 AS s FROM unnest($1::text[]) AS k",
            [f"{provider_id}/b1", *(f"{provider_id}/a{i}" for i in range(20))],
            ASSET_LOCK_STRIPES,
        )
        other = next(r["k"] for r in stripes[1:] if r["s"] != stripes[0]["s"])
        other = other[len(provider_id) + 1 :]
        applier = AssetApplier(db)
        waiting = upserted(provider_id, "b1", at(1))
        later = upserted(provider_id, other, at(1))
        async with holder.transaction():
            await lock_stripes(holder, [f"{provider_id}/b1"], LockSpace.ASSETS, ASSET_LOCK_STRIPES)
            blocked = asyncio.create_task(applier.apply([waiting]))
            waiter = await stripe_waiter(db)
            assert waiter["xid"] is None
            await applier.apply([later])
            page = await read_changes(db.pool, None)
            assert [i["event_id"] for i in page["items"]] == [str(later.event_id)]
        await asyncio.wait_for(blocked, 30)
        items = await _read_until(db, page["next_cursor"], 1)
        assert [i["event_id"] for i in items] == [str(waiting.event_id)]
    finally:
        await holder.close()


async def test_concurrent_writers_committing_out_of_order_reach_a_follower_once_each(
    db: Database, database_url: str, provider_id: str
) -> None:
    written: list[uuid.UUID] = []
    done = asyncio.Event()
    rng = random.Random(5)

    async def writer(n: int) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for i in range(15):
                async with conn.transaction():
                    for _ in range(rng.randint(1, 3)):
                        event_id = uuid.uuid4()
                        await write_entry(conn, event_id, f"w{n}-{i}")
                        written.append(event_id)
                    await asyncio.sleep(rng.random() * 0.03)  # commit at a random later moment
        finally:
            await conn.close()

    async def applier() -> None:
        apply = AssetApplier(db)
        for i in range(10):
            await apply.apply([upserted(provider_id, f"r{i % 3}", at(i))])

    seen: list[dict[str, object]] = []

    async def follower() -> None:
        cursor = None
        while not done.is_set():
            page = await read_changes(db.pool, cursor, limit=5)
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            await asyncio.sleep(0.005)
        seen.extend(await _read_until(db, cursor, len(written) + 10 - len(seen)))

    following = asyncio.create_task(follower())
    await asyncio.gather(*(writer(n) for n in range(4)), applier())
    done.set()
    await asyncio.wait_for(following, 60)

    stored = await db.fetch("SELECT event_id FROM asset_changes ORDER BY xid, change_id")
    assert len(stored) == len(written) + 10
    assert [i["event_id"] for i in seen] == [str(r["event_id"]) for r in stored]
    assert len({i["event_id"] for i in seen}) == len(seen)


async def test_the_feed_shape_and_a_cursor_with_nothing_new(db: Database, provider_id: str) -> None:
    applier = AssetApplier(db)
    live = upserted(provider_id, "a1", at(1))
    await applier.apply([live])
    await applier.apply([deleted(provider_id, "a2", at(2))])
    await _read_until(db, None, 2)  # settled: from now on every read sees both
    page = await read_changes(db.pool, None)
    first, second = page["items"]
    assert first == {
        "cursor": first["cursor"],
        "event_id": str(live.event_id),
        "type": "asset.upserted",
        "provider_id": provider_id,
        "asset_id": "a1",
        "updated_at": "2026-01-01T12:01:00.000000Z",
        "deleted": False,
        "content_hash": live.payload.content_hash,
        "applied_at": first["applied_at"],
    }
    assert (second["type"], second["deleted"], second["content_hash"]) == (
        "asset.deleted",
        True,
        None,
    )
    assert page["next_cursor"] == second["cursor"]
    again = await read_changes(db.pool, page["next_cursor"])
    assert again == {"items": [], "next_cursor": page["next_cursor"]}
    with pytest.raises(CatalogRequestInvalid):
        await read_changes(db.pool, "garbage")
    with pytest.raises(CatalogRequestInvalid):
        await read_changes(db.pool, None, limit=501)


async def test_an_expired_cursor_is_gone(db: Database, database_url: str, provider_id: str) -> None:
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1))])
    await _read_until(db, None, 1)
    old_cursor = (await read_changes(db.pool, None))["next_cursor"]
    await applier.apply([upserted(provider_id, "a1", at(2))])
    await applier.apply([upserted(provider_id, "a1", at(3))])
    await _read_until(db, None, 3)
    everything = await read_changes(db.pool, None)
    # Age the first two entries past retention, and let the relay have published them.
    await db.execute("ALTER TABLE asset_changes DISABLE TRIGGER asset_changes_append_only")
    await db.execute(
        "UPDATE asset_changes SET applied_at = now() - interval '8 days' "
        "WHERE (xid, change_id) <= (SELECT xid, change_id FROM asset_changes "
        "ORDER BY xid, change_id OFFSET 1 LIMIT 1)"
    )
    await db.execute("ALTER TABLE asset_changes ENABLE TRIGGER asset_changes_append_only")
    last = everything["items"][-1]["cursor"]
    await db.execute(
        "UPDATE change_relays SET (xid, change_id) = (SELECT xid, change_id FROM asset_changes "
        "ORDER BY xid DESC, change_id DESC LIMIT 1)"
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert await prune(conn, timedelta(days=7)) == 2
    finally:
        await conn.close()
    with pytest.raises(CursorExpired):
        await read_changes(db.pool, old_cursor)
    fresh = await read_changes(db.pool, None)
    assert [i["cursor"] for i in fresh["items"]] == [last]


async def test_retention_never_removes_what_the_relay_has_not_published(
    db: Database, database_url: str, provider_id: str
) -> None:
    await AssetApplier(db).apply([upserted(provider_id, "a1", at(1))])
    await db.execute("ALTER TABLE asset_changes DISABLE TRIGGER asset_changes_append_only")
    await db.execute("UPDATE asset_changes SET applied_at = now() - interval '30 days'")
    await db.execute("ALTER TABLE asset_changes ENABLE TRIGGER asset_changes_append_only")
    conn = await asyncpg.connect(database_url)
    try:
        assert await prune(conn, timedelta(days=7)) == 0
    finally:
        await conn.close()
    assert await db.fetchval("SELECT count(*) FROM asset_changes") == 1


async def test_the_audit_is_append_only(db: Database, provider_id: str) -> None:
    await AssetApplier(db).apply([upserted(provider_id, "a1", at(1))])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("UPDATE asset_changes SET deleted = true")


async def test_the_catalogue_lists_live_assets_of_enabled_providers_once_each(
    db: Database, provider_id: str
) -> None:
    await db.execute(
        "INSERT INTO providers (provider_id, name) VALUES ('prv_b', 'B'), ('prv_off', 'Off')"
    )
    await db.execute("UPDATE providers SET disabled = true WHERE provider_id = 'prv_off'")
    applier = AssetApplier(db)
    await applier.apply(
        [
            *(upserted(provider_id, f"a{i}", at(i)) for i in range(5)),
            upserted("prv_b", "b1", at(1), status="sold"),
            upserted("prv_off", "hidden", at(1)),
            deleted(provider_id, "gone", at(1)),
        ]
    )
    await applier.apply([deleted(provider_id, "a4", at(9))])

    listed: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = await list_catalog(db.pool, cursor=cursor, limit=2)
        listed.extend((i["_meta"]["provider_id"], i["id"]) for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A write behind the cursor while paging never makes an asset appear twice.
        await applier.apply([upserted(provider_id, "a0", at(20 + len(listed)))])
    assert listed == [("prv_b", "b1"), *((provider_id, f"a{i}") for i in range(4))]

    sold = await list_catalog(db.pool, status="sold")
    assert [i["id"] for i in sold["items"]] == ["b1"]
    item = sold["items"][0]
    assert set(item["_meta"]) == {"provider_id", "updated_at", "content_hash", "applied_at"}
    mine = await list_catalog(db.pool, provider_id=provider_id, updated_since=at(3))
    assert [i["id"] for i in mine["items"]] == ["a0", "a3"]
    for bad in ({"limit": 0}, {"status": "bogus"}, {"cursor": "c1.xx"}):
        with pytest.raises(CatalogRequestInvalid):
            await list_catalog(db.pool, **bad)  # type: ignore[arg-type]


async def test_the_feed_read_is_planned_cheap_before_any_statistics(
    db: Database, provider_id: str
) -> None:
    """Before the one-row horizon table had statistics, the planner guessed it at 1,540 rows, each
    joined with a page of entries: past `jit_above_cost` with a few thousand entries, every relay
    page then compiled for 100-250 ms."""
    await db.execute(
        "INSERT INTO asset_changes (event_id, event_type, source, provider_id, asset_id,"
        " updated_at, deleted) SELECT gen_random_uuid(), 'asset.deleted', 'push', 'prv_test',"
        " 'a' || i, now(), true FROM generate_series(1, 10000) AS i"
    )
    plan = await db.fetchval("EXPLAIN (FORMAT JSON) " + CHANGES_AFTER, "0", 0, 2000, "1000000")
    cost = (orjson.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Total Cost"]
    assert cost < 100_000  # Postgres' default jit_above_cost


async def test_feed_cursors_and_times_are_rendered_as_python_renders_them(
    db: Database, database_url: str, provider_id: str
) -> None:
    """The feed's cursors and times are rendered by Postgres (`CHANGE_CURSOR`, `TIMESTAMP_TEXT`):
    byte for byte what `change_cursor` and `timestamp_text` render, whatever the session's
    TimeZone, a year below 1000 included."""
    moments = [
        datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC),
        datetime(5, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
        datetime(2026, 11, 29, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    await db.execute(
        "INSERT INTO asset_changes (event_id, event_type, source, provider_id, asset_id,"
        " updated_at, deleted, applied_at) SELECT gen_random_uuid(), 'asset.deleted', 'push',"
        " 'prv_test', 'a' || n, u, true, u FROM unnest($1::timestamptz[]) WITH ORDINALITY"
        " AS m(u, n)",
        moments,
    )
    conn = await connect(database_url)
    try:
        await conn.execute("SET TIME ZONE 'America/St_Johns'")
        items = (await read_changes(conn, None, limit=10))["items"]
    finally:
        await conn.close()
    stored = await db.fetch(
        "SELECT xid::text, change_id FROM asset_changes ORDER BY xid, change_id"
    )
    assert [i["cursor"] for i in items] == [
        change_cursor(ChangePosition(int(r["xid"]), r["change_id"])) for r in stored
    ]
    # Cursors of positions far beyond this database's: the same text as change_cursor's.
    far = [(2**63 - 1, 2**63 - 1), (4_294_967_296, 7), (1, 0)]
    rendered = await db.fetch(
        f"SELECT {CHANGE_CURSOR} AS cursor"
        " FROM unnest($1::text[], $2::bigint[]) AS c(xid, change_id)",
        [str(x) for x, _ in far],
        [n for _, n in far],
    )
    assert [r["cursor"] for r in rendered] == [change_cursor(ChangePosition(*p)) for p in far]
    expected = [timestamp_text(m) for m in moments]
    assert [i["updated_at"] for i in items] == expected
    assert [i["applied_at"] for i in items] == expected
    assert expected[0] == "999-03-04T05:06:07.000000Z"
