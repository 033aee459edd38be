"""The reconciler as real processes: patch receipts over HTTP, the outbox relay killed between
commit and publish, SIGTERM in the middle of a batch, and three replicas at once."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import aiohttp
import asyncpg
import pytest

from rwasync.platform.broker import Broker
from rwasync.platform.db import LockSpace, stripes_of
from rwasync.reconciler.apply import ASSET_LOCK_STRIPES
from rwasync.reconciler.settings import ReconcilerSettings
from rwasync.schema import topology
from rwasync.schema.events import AnyEvent
from rwasync.schema.messages import message_for
from tests.e2e.test_faults import reconciler_with
from tests.e2e.test_flows import get_asset, now, put_asset, receipt
from tests.support.asset_model import fold
from tests.support.changes import ChangeListener
from tests.support.events import asset_doc, deleted, patched, upserted
from tests.support.system import ServiceProcess, System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def broker(system: System) -> AsyncIterator[Broker]:
    b = Broker(system.amqp_url, name="e2e-publisher")
    b.start()
    await b.wait_ready(timeout=30)
    yield b
    await b.close()


@pytest.fixture
async def database(system: System) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(system.database_url)
    yield conn
    await conn.close()


async def _publish(broker: Broker, events: Sequence[AnyEvent], per_message: int = 1) -> None:
    for start in range(0, len(events), per_message):
        chunk = list(events[start : start + per_message])
        await broker.publish(topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(chunk))


async def _undecided(db: asyncpg.Connection, events: Sequence[AnyEvent]) -> int:
    return int(
        await db.fetchval(
            "SELECT $2::int - count(*) FROM event_receipts "
            "WHERE event_id = ANY($1::uuid[]) AND status <> 'accepted'",
            [e.event_id for e in events],
            len(events),
        )
    )


async def test_patch_receipts_and_the_patched_document(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], broker: Broker
) -> None:
    pid = provider["provider_id"]
    t = now() - timedelta(minutes=10)
    base = await put_asset(http, system, provider, asset_doc("pat-1", t, rental={"units_total": 2}))
    assert (await receipt(http, system, provider, base["event_id"]))["status"] == "applied"

    good = patched(pid, "pat-1", t + timedelta(minutes=2), {"description": "patched"})
    stale = patched(pid, "pat-1", t - timedelta(minutes=1), {"description": "older"})
    invalid = patched(pid, "pat-1", t + timedelta(minutes=3), {"rental": {"units_rented": 9}})
    unknown = patched(pid, "pat-404", t, {"name": "nobody"})
    await _publish(broker, [good, stale, invalid, unknown])

    outcomes = {
        name: await receipt(http, system, provider, str(e.event_id))
        for name, e in (
            ("good", good),
            ("stale", stale),
            ("invalid", invalid),
            ("unknown", unknown),
        )
    }
    assert outcomes["good"]["status"] == "applied"
    assert outcomes["good"]["type"] == "asset.patched"
    assert outcomes["stale"]["status"] == "stale_ignored"
    assert outcomes["invalid"]["status"] == "rejected"
    assert "/rental/units_rented" in outcomes["invalid"]["reason"]
    assert outcomes["unknown"]["status"] == "rejected" and outcomes["unknown"]["reason"]
    status, stored = await get_asset(http, system, provider, "pat-1")
    assert status == 200 and stored["description"] == "patched"
    assert stored["_meta"]["updated_at"] == stored["updated_at"]


async def _holding(http: aiohttp.ClientSession, service: ServiceProcess) -> bool:
    async with http.get(service.url + "/metrics") as response:
        return "rwasync_change_relay_holder 1.0" in await response.text()


async def test_changes_committed_before_a_relay_crash_are_published_after_it(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    async with ChangeListener(system.amqp_url) as listener:
        # A relay that looks for new changes only once a minute: what commits after its first
        # look stays unpublished until it is killed.
        async with reconciler_with(system, RWASYNC_RECONCILER_RELAY_INTERVAL="60") as slow:
            await eventually(lambda: _holding(http, slow), bool, timeout=30, what="relay lock")
            await asyncio.sleep(1)  # its first look is done
            t = now() - timedelta(minutes=1)
            accepted = [
                await put_asset(http, system, provider, asset_doc(f"relay-{i}", t))
                for i in range(5)
            ]
            for body in accepted:
                assert (await receipt(http, system, provider, body["event_id"]))[
                    "status"
                ] == "applied"
            ids = {body["event_id"] for body in accepted}
            assert not ids & {e["event_id"] for e in listener.entries}  # committed, unpublished
            slow.stop(signal.SIGKILL)
        # The shared reconciler is back: its relay publishes what the killed one never did.
        await eventually(
            lambda: asyncio.sleep(0, {e["event_id"] for e in listener.entries}),
            lambda seen: ids <= seen,
            timeout=60,
            what="the committed changes published",
        )


async def test_sigterm_in_the_middle_of_a_batch_finishes_it_and_loses_nothing(
    system: System, provider: dict[str, str], broker: Broker, database: asyncpg.Connection
) -> None:
    pid = provider["provider_id"]
    t = now() - timedelta(minutes=1)
    events = [upserted(pid, f"term-{i}", t) for i in range(600)]
    earlier, last = events[:500], events[500:]
    reconciler = system.services["reconciler"]
    await _publish(broker, earlier, per_message=100)
    await eventually(
        lambda: _undecided(database, earlier), lambda n: n == 0, timeout=60, what="drain"
    )
    # Hold the lock stripe of one asset of the last batch, so that batch waits in the middle of
    # its transaction (the reconciler takes its stripes there, before writing anything).
    stripe = await database.fetchval(
        "SELECT (hashtext($1) & 2147483647) % $2", f"{pid}/term-599", ASSET_LOCK_STRIPES
    )
    await database.execute("SELECT pg_advisory_lock($1, $2)", int(LockSpace.ASSETS), stripe)
    try:
        await _publish(broker, last, per_message=100)
        await eventually(
            lambda: database.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND NOT granted AND classid = $1",
                int(LockSpace.ASSETS),
            ),
            lambda waiting: waiting >= 1,
            timeout=60,
            what="the last batch blocked on its stripe",
        )
        # In flight, blocked mid-transaction: the events of the held stripe's share (the batch's
        # other shares apply side by side and commit).
        shares = ReconcilerSettings.model_fields["apply_shares"].default
        stripes = await stripes_of(
            database, [f"{pid}/{e.asset_id}" for e in last], ASSET_LOCK_STRIPES
        )
        blocked = sum(1 for s in stripes if s % shares == stripe % shares)
        assert blocked > 0
        # The other shares commit at their own pace: the blocked one waits after its first
        # statement, while they still stage, merge and commit (under load, not yet done).
        await eventually(
            lambda: _undecided(database, last),
            lambda undecided: undecided == blocked,
            timeout=30,
            what="the batch's other shares committed beside the blocked one",
        )
        reconciler.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        await asyncio.sleep(1)
    finally:
        await database.execute("SELECT pg_advisory_unlock($1, $2)", int(LockSpace.ASSETS), stripe)
    code = await asyncio.to_thread(reconciler.process.wait, 30)  # type: ignore[union-attr]
    assert code == 0
    assert await _undecided(database, events) == 0  # the batch finished before the exit
    reconciler.process = None
    reconciler.start()
    await asyncio.to_thread(reconciler.wait)


async def test_three_replicas_end_in_the_in_order_state_and_relay_each_change_once(
    system: System, provider: dict[str, str], broker: Broker, database: asyncpg.Connection
) -> None:
    pid = provider["provider_id"]
    rng = random.Random(3)
    t = now() - timedelta(hours=1)
    events: list[AnyEvent] = []
    for i in range(400):
        asset = f"rep-{rng.randint(0, 40)}"
        moment = t + timedelta(seconds=rng.randint(0, 60))
        accepted = t + timedelta(minutes=5, milliseconds=i)
        if rng.random() < 0.15:
            events.append(deleted(pid, asset, moment, accepted_at=accepted))
        elif rng.random() < 0.2:
            events.append(patched(pid, asset, moment, {"name": f"p{i}"}, accepted_at=accepted))
        else:
            events.append(upserted(pid, asset, moment, accepted_at=accepted, description=f"{i}"))
    delivered = events + rng.sample(events, 60)
    rng.shuffle(delivered)

    extra = [
        ServiceProcess("reconciler", free_port(), system.env, system.workdir / f"replica-{n}.log")
        for n in range(2)
    ]
    async with ChangeListener(system.amqp_url) as listener:
        for replica in extra:
            replica.start()
        try:
            for replica in extra:
                await asyncio.to_thread(replica.wait)
            await _publish(broker, delivered, per_message=20)
            await eventually(
                lambda: _undecided(database, events), lambda n: n == 0, timeout=120, what="drain"
            )
            applied = {
                str(r["event_id"])
                for r in await database.fetch(
                    "SELECT event_id FROM event_receipts "
                    "WHERE event_id = ANY($1::uuid[]) AND status = 'applied'",
                    [e.event_id for e in events],
                )
            }
            await eventually(
                lambda: asyncio.sleep(0, {e["event_id"] for e in listener.entries}),
                lambda seen: applied <= seen,
                timeout=60,
                what="every applied change announced",
            )
        finally:
            for replica in extra:
                replica.stop()
    announced = [e["event_id"] for e in listener.entries if e["event_id"] in applied]
    assert len(announced) == len(applied)  # once each: one relay at a time, nothing crashed

    rejected = {
        str(r["event_id"])
        for r in await database.fetch(
            "SELECT event_id FROM event_receipts WHERE provider_id = $1 AND status = 'rejected'",
            pid,
        )
    }
    rows = {
        r["asset_id"]: r
        for r in await database.fetch(
            "SELECT asset_id, deleted, event_id, content_hash FROM assets WHERE provider_id = $1",
            pid,
        )
    }
    for asset in {e.asset_id for e in events}:
        expected = fold(
            e for e in events if e.asset_id == asset and str(e.event_id) not in rejected
        )
        row = rows.get(asset)
        if expected is None:
            assert row is None, asset
            continue
        assert row is not None, asset
        assert (row["deleted"], str(row["event_id"])) == (
            expected.deleted,
            expected.version.event_id,
        )
        if not expected.deleted:
            assert row["content_hash"].hex() == expected.content_hash, asset
