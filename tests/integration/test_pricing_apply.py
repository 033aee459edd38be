"""Pricing's apply against real Postgres: the latest price never regresses by as_of, every tick
is kept in history once per (asset, as_of), and receipts say what happened."""

from __future__ import annotations

import random
from decimal import Decimal

import asyncpg
import pytest

from rwasync.platform.db import Database, LockSpace, stripes_of
from rwasync.pricing import queries
from rwasync.pricing.apply import SUPERSEDED_REASON, PriceApplier, apply_arguments, apply_plain
from rwasync.schema.events import PriceUpdated
from rwasync.store import prices, receipts
from tests.support.events import at, price

pytestmark = pytest.mark.integration


async def _receipt(db: Database, tick: PriceUpdated) -> tuple[str, bool | None]:
    row = await db.fetchrow(
        "SELECT status, latest FROM event_receipts WHERE event_id = $1", tick.event_id
    )
    assert row is not None
    return row["status"], row["latest"]


async def test_older_tick_goes_to_history_but_not_latest(db: Database, provider_id: str) -> None:
    applier = PriceApplier(db)
    newer = price(provider_id, "a1", "51.25", at(10))
    older = price(provider_id, "a1", "49.00", at(5), accepted_at=at(11))
    await applier.apply([newer])
    await applier.apply([older])
    latest = await db.fetchrow("SELECT amount, as_of FROM latest_prices")
    assert latest is not None and latest["amount"] == Decimal("51.25")
    history = await db.fetch("SELECT as_of, amount FROM price_history ORDER BY as_of")
    assert [(r["as_of"], r["amount"]) for r in history] == [
        (at(5), Decimal("49.00")),
        (at(10), Decimal("51.25")),
    ]
    assert await _receipt(db, newer) == ("applied", True)
    assert await _receipt(db, older) == ("applied", False)


async def test_correction_at_equal_as_of_and_duplicates(db: Database, provider_id: str) -> None:
    applier = PriceApplier(db)
    first = price(provider_id, "a1", "50", at(1), accepted_at=at(2))
    correction = price(provider_id, "a1", "50.5", at(1), accepted_at=at(3))
    resent = price(provider_id, "a1", "50.50", at(1), accepted_at=at(4))
    await applier.apply([first])
    await applier.apply([correction])
    await applier.apply([resent])
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("50.5")
    assert await db.fetchval("SELECT count(*) FROM price_history") == 1
    assert await _receipt(db, correction) == ("applied", True)
    assert (await _receipt(db, resent))[0] == "duplicate"
    # The earlier-accepted tick redelivered after the correction changes nothing.
    await applier.apply([first])
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("50.5")


async def test_latest_price_is_the_same_for_every_delivery_order(
    db: Database, provider_id: str
) -> None:
    rng = random.Random(3)
    ticks = [
        price(
            provider_id,
            f"a{rng.randint(1, 3)}",
            f"{rng.randint(40, 60)}.{rng.randint(0, 99)}",
            at(rng.randint(0, 20)),
            accepted_at=at(30 + i),
        )
        for i in range(30)
    ]
    applier = PriceApplier(db)
    for tick in ticks:
        await applier.apply([tick])
    expected = await db.fetch("SELECT * FROM asset_prices ORDER BY asset_id")
    expected_history = await db.fetch("SELECT * FROM price_history ORDER BY asset_id, as_of")
    for _ in range(5):
        await db.execute("TRUNCATE asset_prices, price_history, event_receipts")
        shuffled = ticks[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(shuffled) - 1)
        await applier.apply(shuffled[:cut])
        await applier.apply(shuffled[cut:])
        rows = await db.fetch("SELECT * FROM asset_prices ORDER BY asset_id")
        assert [r[:-1] for r in rows] == [r[:-1] for r in expected]  # all but applied_at
        history = await db.fetch("SELECT * FROM price_history ORDER BY asset_id, as_of")
        assert history == expected_history


async def test_a_later_duplicate_keeps_its_acceptance_whatever_the_delivery_order(
    db: Database, provider_id: str
) -> None:
    """Found by the soak run: ticks at one as_of accepted B(101), D(100), C(101) must end at 101
    (C was accepted last) in every delivery order; a duplicate must take its acceptance instant."""
    b = price(provider_id, "a1", "101", at(1), accepted_at=at(2))
    d = price(provider_id, "a1", "100", at(1), accepted_at=at(3))
    c = price(provider_id, "a1", "101", at(1), accepted_at=at(4))
    applier = PriceApplier(db)
    for order in ([b, d, c], [b, c, d], [c, b, d], [d, b, c], [d, c, b], [c, d, b]):
        await db.execute("TRUNCATE asset_prices, price_history, event_receipts")
        for tick in order:
            await applier.apply([tick])
        latest = await db.fetchrow("SELECT amount, accepted_at FROM latest_prices")
        assert latest is not None
        assert (latest["amount"], latest["accepted_at"]) == (Decimal("101"), at(4)), order
        history = await db.fetchrow("SELECT amount, accepted_at FROM price_history")
        assert history is not None
        assert (history["amount"], history["accepted_at"]) == (Decimal("101"), at(4)), order


async def test_every_tick_of_a_batch_gets_its_receipt_from_the_one_statement(
    db: Database, provider_id: str
) -> None:
    """Receipts are written by the apply statement itself: applied (latest or not), stale,
    duplicate, superseded in the batch, with the trace id; an `accepted` receipt is decided."""
    applier = PriceApplier(db)
    first = price(provider_id, "a1", "50", at(5), accepted_at=at(10))
    await applier.apply([first])
    older = price(provider_id, "a1", "49", at(1), accepted_at=at(11))
    superseded = price(provider_id, "a2", "10", at(5), accepted_at=at(11))
    winner = price(provider_id, "a2", "11", at(5), accepted_at=at(12)).model_copy(
        update={"trace_id": "0af7651916cd43dd8448eb211c80319c"}
    )
    duplicate = price(provider_id, "a1", "50.0", at(5), accepted_at=at(13))
    await receipts.record_accepted(db.pool, [older, winner])
    await applier.apply([older, first, superseded, winner, duplicate])
    rows = await db.fetch("SELECT event_id, status, reason, latest, trace_id FROM event_receipts")
    got = {r["event_id"]: (r["status"], r["reason"], r["latest"]) for r in rows}
    assert got == {
        first.event_id: ("applied", None, True),  # decided by the first apply, never again
        older.event_id: ("applied", None, False),
        superseded.event_id: ("stale_ignored", SUPERSEDED_REASON, None),
        winner.event_id: ("applied", None, True),
        duplicate.event_id: ("duplicate", None, None),
    }
    assert {r["event_id"]: r["trace_id"] for r in rows}[winner.event_id] == winner.trace_id
    # The same batch again: all stale, the decided receipts unchanged.
    await applier.apply([older, first, superseded, winner, duplicate])
    again = await db.fetch("SELECT event_id, status, reason, latest FROM event_receipts")
    assert {r["event_id"]: (r["status"], r["reason"], r["latest"]) for r in again} == got


async def test_the_one_round_trip_apply_locks_the_stripes_every_price_writer_locks(
    db: Database, provider_id: str
) -> None:
    """`price_apply_ticks` takes its stripe locks in SQL: they must be the ones lock_assets
    takes (the CLI's, the checked path's) for the same assets, or writers would not serialise."""
    ticks = [price(provider_id, f"asset-{i}", "1", at(i)) for i in range(300)]
    held = (
        "SELECT array_agg(objid::int ORDER BY objid) FROM pg_locks WHERE locktype = 'advisory'"
        " AND classid = $1 AND objsubid = 2 AND pid = pg_backend_pid()"
    )
    async with db.connection() as conn:
        async with conn.transaction():
            await prices.lock_assets(conn, {(t.provider_id, t.asset_id) for t in ticks})
            expected = await conn.fetchval(held, int(LockSpace.PRICES))
        tr = conn.transaction()
        await tr.start()
        try:
            await apply_plain(conn, ticks, [])
            assert await conn.fetchval(held, int(LockSpace.PRICES)) == expected
        finally:
            await tr.rollback()
    assert 10 < len(expected) <= prices.LOCK_STRIPES


async def set_apply_settings(conn: asyncpg.Connection) -> None:
    """The settings `price_apply_tick_batch_2` runs its statement with, for this transaction."""
    config = await conn.fetchval(
        "SELECT proconfig FROM pg_proc WHERE proname = 'price_apply_tick_batch_2'"
    )
    assert config, "the function sets what its plans may do"
    for setting in config:
        name, value = setting.split("=", 1)
        await conn.execute("SELECT set_config($1, $2, true)", name, value)


async def test_the_apply_statement_probes_history_by_key_even_on_a_plan_made_when_empty(
    db: Database, provider_id: str
) -> None:
    """A generic plan made while the tables were small (a new database, a new connection's first
    batches) must not scan history, the latest prices or the receipts: it is kept while they grow.
    The statement is planned under its function's own settings (migration 0017's)."""
    ticks = [price(provider_id, f"a{i}", "1", at(i)) for i in range(5)]
    args = apply_arguments(ticks, [])
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await set_apply_settings(conn)
        explain = await conn.prepare("EXPLAIN (COSTS OFF) " + queries.APPLY_TICKS)
        plan = "\n".join(r[0] for r in await explain.fetch(*args))
    for table in ("price_history", "asset_prices", "event_receipts"):
        assert f"Seq Scan on {table}" not in plan, plan
    assert "price_history_pkey" in plan or "Index Scan using price_history" in plan
    # Not every undecided receipt, hashed: one probe by key per tick.
    assert "event_receipts_undecided" not in plan, plan
    assert "Index Scan using event_receipts_pkey on event_receipts" in plan, plan


async def test_moving_a_latest_price_leaves_its_row_on_its_page(
    db: Database, provider_id: str
) -> None:
    """Every applied tick updates its asset's latest row; with room kept on each page (migration
    0015) the new version stays on the row's page (a HOT update: no new primary-key entry, no
    bloat). With full pages, the rows of every full page moved."""
    applier = PriceApplier(db)
    assets = [f"asset-{i:04d}" for i in range(300)]
    await applier.apply([price(provider_id, a, "10.00", at(1)) for a in assets])
    pages = "SELECT asset_id, (ctid::text::point)[0] AS page FROM asset_prices"
    before = {r["asset_id"]: r["page"] for r in await db.fetch(pages)}
    assert len(set(before.values())) > 1  # several pages, the first ones filled
    await applier.apply([price(provider_id, a, "11.00", at(2)) for a in assets])
    after = {r["asset_id"]: r["page"] for r in await db.fetch(pages)}
    assert after == before


async def test_a_batch_of_several_providers_and_traces_keeps_each_ticks_own(
    db: Database, provider_id: str
) -> None:
    """The provider and trace ids go to the apply statement once when a batch shares them, one
    per tick otherwise: each tick keeps its own either way."""
    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_other', 'Other')")
    shared = [price(provider_id, f"a{i}", "1.5", at(1)) for i in range(3)]
    shared = [t.model_copy(update={"trace_id": "trace-shared"}) for t in shared]
    mixed = [
        price(provider_id, "a0", "2.5", at(2)).model_copy(update={"trace_id": "trace-1"}),
        price("prv_other", "a0", "3.5", at(2)).model_copy(update={"trace_id": "trace-2"}),
        price("prv_other", "a1", "4.5", at(2)),
    ]
    applier = PriceApplier(db)
    await applier.apply(shared)
    await applier.apply(mixed)
    latest = await db.fetch("SELECT provider_id, asset_id, amount FROM asset_prices")
    assert {(r["provider_id"], r["asset_id"]): r["amount"] for r in latest} == {
        (provider_id, "a0"): Decimal("2.5"),
        (provider_id, "a1"): Decimal("1.5"),
        (provider_id, "a2"): Decimal("1.5"),
        ("prv_other", "a0"): Decimal("3.5"),
        ("prv_other", "a1"): Decimal("4.5"),
    }
    receipts_ = await db.fetch("SELECT event_id, provider_id, trace_id FROM event_receipts")
    assert {r["event_id"]: (r["provider_id"], r["trace_id"]) for r in receipts_} == {
        t.event_id: (t.provider_id, t.trace_id or None) for t in shared + mixed
    }


async def test_a_share_that_fails_fails_the_message_and_its_retry_applies_nothing_twice(
    db: Database, database_url: str, provider_id: str
) -> None:
    """A message applied as two transactions (one per share of the stripes): one share cannot
    take a stripe another transaction holds and times out; the other commits. The message fails
    only once both ended, and its retry decides the failed share's ticks and leaves the
    committed ones as they were."""
    ticks = [price(provider_id, f"s{i}", "10", at(1), accepted_at=at(2)) for i in range(200)]
    await receipts.record_accepted(db.pool, ticks)
    keys = [f"{provider_id}/s{i}" for i in range(200)]
    stripes = await stripes_of(db.pool, keys, prices.LOCK_STRIPES)
    held_share = stripes[0] % 2
    blocked = [t for t, s in zip(ticks, stripes, strict=True) if s % 2 == held_share]
    others = [t for t, s in zip(ticks, stripes, strict=True) if s % 2 != held_share]
    assert others, "every asset fell in one share"

    # Unknown DSN parameters are server settings to asyncpg.
    impatient = Database(f"{database_url}?lock_timeout=300ms", min_size=1, max_size=4)
    impatient.start()
    await impatient.wait_connected(timeout=30)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", int(LockSpace.PRICES), stripes[0]
            )
            with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
                await PriceApplier(impatient, shares=2).apply(ticks)
        assert {await _receipt(db, t) for t in others} == {("applied", True)}
        assert {await _receipt(db, t) for t in blocked} == {("accepted", None)}
        assert await db.fetchval("SELECT count(*) FROM price_history") == len(others)

        await PriceApplier(impatient, shares=2).apply(ticks)
    finally:
        await holder.close()
        await impatient.close()
    assert {await _receipt(db, t) for t in ticks} == {("applied", True)}
    assert await db.fetchval("SELECT count(*) FROM price_history") == len(ticks)
    assert await db.fetchval("SELECT count(*) FROM price_changes") == len(ticks)
