"""The reconciler's guarded merge against real Postgres: idempotent, order-free, tombstones hold."""

from __future__ import annotations

import asyncio
import itertools
import random

import asyncpg
import pytest

from rwasync.platform.db import Database, LockSpace, is_transient, lock_stripes, stripes_of
from rwasync.reconciler import queries
from rwasync.reconciler.apply import ASSET_LOCK_STRIPES, AssetApplier, _incoming
from rwasync.schema.events import AssetDeleted, AssetUpserted, EventSource
from rwasync.store.receipts import record_accepted
from tests.support.events import at, deleted, upserted
from tests.support.locks import stripe_waiter

pytestmark = pytest.mark.integration

STATE = """SELECT asset_id, updated_at, deleted, accepted_at, event_id, content_hash, document
           FROM asset_state WHERE provider_id = $1 ORDER BY asset_id"""


async def _state(db: Database, provider_id: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await db.fetch(STATE, provider_id)]


async def _receipt(db: Database, event: AssetUpserted | AssetDeleted) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT status, reason FROM event_receipts WHERE event_id = $1", event.event_id
    )
    assert row is not None
    return row["status"], row["reason"]


async def _reset(db: Database) -> None:
    await db.execute("TRUNCATE assets, event_receipts")


async def test_upsert_applied_twice_and_out_of_order_ends_in_same_row(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    v1 = upserted(provider_id, "a1", at(1), description="first")
    v2 = upserted(provider_id, "a1", at(2), description="second")

    await applier.apply([v1])
    await applier.apply([v2])
    await applier.apply([v1])  # redelivery of the older one
    await applier.apply([v2])  # redelivery of the newer one
    in_order = await _state(db, provider_id)
    assert in_order[0][5] == bytes.fromhex(v2.payload.content_hash)
    assert await _receipt(db, v1) == ("applied", None)
    assert await _receipt(db, v2) == ("applied", None)

    await _reset(db)
    await applier.apply([v2])
    await applier.apply([v1])
    assert await _state(db, provider_id) == in_order
    status, reason = await _receipt(db, v1)
    assert status == "stale_ignored" and reason
    assert await _receipt(db, v2) == ("applied", None)


async def test_tombstone_is_not_resurrected_by_an_older_upsert(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    old = upserted(provider_id, "a1", at(1))
    tombstone = deleted(provider_id, "a1", at(5))
    await applier.apply([tombstone])  # delete of a not-yet-known asset: stored as a tombstone
    await applier.apply([old])
    (row,) = await _state(db, provider_id)
    assert row[2] is True  # still deleted
    assert (await _receipt(db, old))[0] == "stale_ignored"

    newer = upserted(provider_id, "a1", at(6))
    await applier.apply([newer])
    (row,) = await _state(db, provider_id)
    assert row[2] is False
    assert (await _receipt(db, newer))[0] == "applied"


async def test_deletion_wins_at_equal_updated_at(db: Database, provider_id: str) -> None:
    applier = AssetApplier(db)
    change = upserted(provider_id, "a1", at(3), accepted_at=at(9))
    removal = deleted(provider_id, "a1", at(3), accepted_at=at(4))
    await applier.apply([removal])
    await applier.apply([change])
    (row,) = await _state(db, provider_id)
    assert row[2] is True
    assert (await _receipt(db, change))[0] == "stale_ignored"


async def test_duplicate_writes_no_document_but_takes_the_newer_acceptance(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    first = upserted(provider_id, "a1", at(1), accepted_at=at(1))
    resent = upserted(provider_id, "a1", at(1), accepted_at=at(2))  # a client's retried push
    await applier.apply([first])
    applied_at = await db.fetchval("SELECT applied_at FROM asset_state WHERE asset_id = 'a1'")
    await applier.apply([resent])
    row = await db.fetchrow("SELECT applied_at, accepted_at, event_id FROM asset_state")
    assert row is not None
    assert row["applied_at"] == applied_at
    assert row["accepted_at"] == at(2)
    assert row["event_id"] == resent.event_id
    assert await _receipt(db, resent) == ("duplicate", None)
    # A decided receipt never changes: redelivering the first event leaves it `applied`.
    await applier.apply([first])
    assert await _receipt(db, first) == ("applied", None)


async def test_deleting_a_deleted_asset_is_a_duplicate_that_only_moves_its_version(
    db: Database, provider_id: str
) -> None:
    """A repeated DELETE was `applied` again: `applied_at` and `deleted_at` moved and the change
    feed got a second `asset.deleted` though nothing changed. The tombstone's version still
    moves on, so an upsert older than the later deletion stays stale."""
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1))])
    first = deleted(provider_id, "a1", at(2), accepted_at=at(3))
    await applier.apply([first])
    before = await db.fetchrow("SELECT applied_at, deleted_at FROM asset_state")
    entries = await db.fetchval("SELECT count(*) FROM asset_changes")
    for again in (
        deleted(provider_id, "a1", at(2), accepted_at=at(4)),  # the same request again
        deleted(provider_id, "a1", at(5), accepted_at=at(6)),  # a later deletion
    ):
        await applier.apply([again])
        assert await _receipt(db, again) == ("duplicate", None)
        row = await db.fetchrow("SELECT applied_at, deleted_at, event_id FROM asset_state")
        assert row is not None and before is not None
        assert (row["applied_at"], row["deleted_at"]) == (before["applied_at"], at(2))
        assert row["event_id"] == again.event_id
    assert await db.fetchval("SELECT count(*) FROM asset_changes") == entries
    older = upserted(provider_id, "a1", at(4))
    await applier.apply([older])
    assert (await _receipt(db, older))[0] == "stale_ignored"


async def test_batch_keeps_newest_per_asset_and_decides_every_event(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    events = [
        upserted(provider_id, "a1", at(1)),
        upserted(provider_id, "a1", at(3)),
        upserted(provider_id, "a2", at(2)),
        deleted(provider_id, "a1", at(2)),
    ]
    await applier.apply([*events, events[0]])  # includes a redelivered copy
    rows = await _state(db, provider_id)
    assert [(r[0], r[1], r[2]) for r in rows] == [("a1", at(3), False), ("a2", at(2), False)]
    statuses = [(await _receipt(db, e))[0] for e in events]
    assert statuses == ["stale_ignored", "applied", "applied", "stale_ignored"]


def _history() -> list[AssetUpserted | AssetDeleted]:
    rng = random.Random(7)
    events: list[AssetUpserted | AssetDeleted] = []
    for i in range(40):
        asset = f"a{rng.randint(1, 4)}"
        moment = at(rng.randint(0, 12))
        accepted = at(20 + i)
        if rng.random() < 0.25:
            events.append(deleted("prv_test", asset, moment, accepted_at=accepted))
        else:
            events.append(
                upserted(
                    "prv_test",
                    asset,
                    moment,
                    accepted_at=accepted,
                    source=EventSource.FEED,
                    description=f"v{rng.randint(0, 2)}",
                )
            )
    return events


async def test_any_order_any_split_any_concurrency_ends_in_the_same_state(
    db: Database, provider_id: str
) -> None:
    """Random sequences with duplicates, delivered in random orders, split into random batches and
    applied by concurrent workers, always end in the in-order state."""
    applier = AssetApplier(db)
    events = _history()
    for e in events:
        await applier.apply([e])
    expected = await _state(db, provider_id)
    rng = random.Random(11)
    for _ in range(8):
        await _reset(db)
        shuffled = events + rng.sample(events, 10)  # with redeliveries
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 6))
        batches = [shuffled[a:b] for a, b in itertools.pairwise([0, *cuts, len(shuffled)])]
        await asyncio.gather(*(applier.apply(batch) for batch in batches))
        assert await _state(db, provider_id) == expected


@pytest.mark.parametrize("setting", ["lock_timeout = '200ms'", "statement_timeout = '300ms'"])
async def test_a_lock_or_statement_timeout_is_waited_out_not_dead_lettered(
    database_url: str, provider_id: str, setting: str
) -> None:
    """Another session holds the asset's lock stripe longer than the services' lock or statement
    timeout allows: the apply fails with an error the consumer retries in place (a statement
    timeout used to count as poison, and the consumer dead-lettered valid events), and succeeds
    once the lock is released."""
    admin = await asyncpg.connect(database_url)
    holder = await asyncpg.connect(database_url)
    timed = Database(database_url, min_size=1, max_size=2)
    try:
        await admin.execute(f"ALTER DATABASE {_quoted(admin)} SET {setting}")
        timed.start()
        await timed.wait_connected(timeout=30)
        applier = AssetApplier(timed)
        event = upserted(provider_id, "locked", at(1))
        async with holder.transaction():
            await lock_stripes(
                holder, [f"{provider_id}/locked"], LockSpace.ASSETS, ASSET_LOCK_STRIPES
            )
            with pytest.raises(Exception) as failure:
                await applier.apply([event])
        assert is_transient(failure.value), repr(failure.value)
        await applier.apply([event])
        assert await _receipt(timed, event) == ("applied", None)
    finally:
        await timed.close()
        await holder.close()
        await admin.close()


def _quoted(conn: asyncpg.Connection) -> str:
    name = conn._params.database  # type: ignore[attr-defined]
    return '"' + str(name).replace('"', '""') + '"'


async def test_receipts_are_decided_without_scanning_the_backlog(
    db: Database, provider_id: str
) -> None:
    """A backlog of undecided receipts (here 20,000, before statistics caught up with them) is
    never scanned to decide a batch's: the planner once AND-ed the whole partial index of
    undecided receipts with the primary key, per batch."""
    await db.execute(
        "INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, accepted_at)"
        " SELECT gen_random_uuid(), 'prv_test', 'b' || i, 'asset.upserted', 'accepted', now()"
        " FROM generate_series(1, 20000) AS i"
    )
    events = [upserted(provider_id, f"a{i}", at(1)) for i in range(100)]
    await record_accepted(db.pool, events)
    async with db.connection() as conn, conn.transaction():
        await conn.execute(queries.CREATE_INCOMING)
        await conn.copy_records_to_table(
            "incoming_asset_events",
            records=_incoming(events, []),
            columns=queries.INCOMING_COLUMNS,
        )
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + queries.APPLY_INCOMING))
    assert "event_receipts_undecided" not in plan


async def test_the_staging_table_is_made_before_the_batch_takes_its_stripes(
    db: Database, database_url: str, provider_id: str
) -> None:
    """Other batches wait on a batch's stripes through every round trip it makes under them, so
    the staging table is made (or found) before its transaction, not under them. On a
    connection's first batch that is a catalog write, committed on its own: the batch still has
    no transaction id while it waits (the change feed's order)."""
    event = upserted(provider_id, "s1", at(1))
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await lock_stripes(holder, [f"{provider_id}/s1"], LockSpace.ASSETS, ASSET_LOCK_STRIPES)
            blocked = asyncio.create_task(AssetApplier(db).apply([event]))
            waiter = await stripe_waiter(db)
            assert waiter["xid"] is None
            assert await db.fetchval(
                "SELECT count(*) FROM pg_class"
                " WHERE relname = 'incoming_asset_events' AND relpersistence = 't'"
            )
        await asyncio.wait_for(blocked, 30)
    finally:
        await holder.close()
    assert (await _receipt(db, event))[0] == "applied"


async def test_an_asset_stored_behind_the_stripes_fails_the_batch_and_its_retry_decides(
    db: Database, database_url: str, provider_id: str
) -> None:
    """An asset the merge classifies as new is inserted without ON CONFLICT: should a writer that
    skipped the stripes store it meanwhile, the batch fails (nothing written over, no receipt
    decided, no change entry) and the consumer's retry classifies it against the stored row."""
    event = upserted(provider_id, "raced", at(1))
    await record_accepted(db.pool, [event])
    await _apply_while_stored_behind_the_stripes(
        db, database_url, "raced", AssetApplier(db), [event]
    )
    assert await _receipt(db, event) == ("accepted", None)
    assert await db.fetchval("SELECT count(*) FROM asset_changes") == 0
    await AssetApplier(db).apply([event])
    status, reason = await _receipt(db, event)
    assert status == "stale_ignored" and reason
    assert (await _state(db, provider_id))[0][1] == at(2)


@pytest.mark.parametrize("shares", [2, 3])
async def test_shares_of_a_batch_end_as_one_transaction_would(
    db: Database, provider_id: str, shares: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch applied as several transactions (one per share of the stripes), in any order, split
    and concurrency, ends in the state and receipts of the in-order apply."""
    monkeypatch.setattr("rwasync.reconciler.apply._SHARED_FROM", 1)
    events = _history()
    for e in events:
        await AssetApplier(db).apply([e])
    expected = await _state(db, provider_id)
    applier = AssetApplier(db, shares=shares)
    rng = random.Random(5)
    for _ in range(4):
        await _reset(db)
        await record_accepted(db.pool, events)
        shuffled = events + rng.sample(events, 10)
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 3))
        batches = [shuffled[a:b] for a, b in itertools.pairwise([0, *cuts, len(shuffled)])]
        await asyncio.gather(*(applier.apply(batch) for batch in batches))
        assert await _state(db, provider_id) == expected
        # Whether an event ends applied or stale depends on the split; every one is decided.
        assert all([(await _receipt(db, e))[0] != "accepted" for e in events])


async def test_a_failing_share_fails_the_batch_and_its_retry_applies_nothing_twice(
    db: Database, database_url: str, provider_id: str
) -> None:
    """One share of a batch fails (an asset stored behind the stripes); the other shares commit.
    The batch fails once every share has ended, and its retry decides the failed share's events
    without deciding or recording the committed ones again."""
    events = [upserted(provider_id, f"s{i}", at(1)) for i in range(200)]
    await record_accepted(db.pool, events)
    stripes = await stripes_of(
        db.pool, [f"{provider_id}/s{i}" for i in range(200)], ASSET_LOCK_STRIPES
    )
    raced_share = stripes[0] % 2
    in_raced_share = [e for e, s in zip(events, stripes, strict=True) if s % 2 == raced_share]
    others = [e for e, s in zip(events, stripes, strict=True) if s % 2 != raced_share]
    assert others, "every asset fell in one share"
    await _apply_while_stored_behind_the_stripes(
        db, database_url, "s0", AssetApplier(db, shares=2), events
    )
    assert {await _receipt(db, e) for e in others} == {("applied", None)}
    assert {await _receipt(db, e) for e in in_raced_share} == {("accepted", None)}
    assert await db.fetchval("SELECT count(*) FROM asset_changes") == len(others)

    await AssetApplier(db, shares=2).apply(events)
    assert {await _receipt(db, e) for e in others} == {("applied", None)}
    assert (await _receipt(db, events[0]))[0] == "stale_ignored"
    assert {await _receipt(db, e) for e in in_raced_share[1:]} == {("applied", None)}
    assert await db.fetchval("SELECT count(*) FROM asset_changes") == len(events) - 1


async def _apply_while_stored_behind_the_stripes(
    db: Database,
    database_url: str,
    asset_id: str,
    applier: AssetApplier,
    events: list[AssetUpserted],
) -> None:
    """Apply `events` while another session, skipping the lock stripes, stores `asset_id` and
    commits once the apply waits on its row: the apply must fail with a unique violation."""
    intruder = await asyncpg.connect(database_url)
    try:
        async with intruder.transaction():
            await intruder.execute(
                "INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at,"
                " event_id, source, document, content_hash, status, applied_at)"
                " VALUES ($1, $2, $3, false, now(), gen_random_uuid(), 'push',"
                " '{}'::jsonb, '\\x00'::bytea, 'active', now())",
                events[0].provider_id,
                asset_id,
                at(2),
            )
            applying = asyncio.create_task(applier.apply(events))
            # (read outside the intruder's transaction, which would see one snapshot of it)
            while not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                assert not applying.done(), applying
                await asyncio.sleep(0.01)
        with pytest.raises(asyncpg.UniqueViolationError):
            await applying
    finally:
        await intruder.close()
