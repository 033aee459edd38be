"""The outbox relay against real Postgres and RabbitMQ: what committed while no relay ran is
published when one starts, in order; of two replicas only one relays, and the other takes over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database, LockSpace
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.relay import ChangeRelay
from tests.support.changes import ChangeListener
from tests.support.events import at, upserted
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def listener(vhost_amqp_url: str, broker: Broker) -> AsyncIterator[ChangeListener]:
    async with ChangeListener(vhost_amqp_url) as listening:
        yield listening


async def _relay(database_url: str, broker: Broker) -> ChangeRelay:
    relay = ChangeRelay(database_url, broker, interval=0.05, per_message=3)
    relay.start()
    return relay


async def test_changes_committed_without_a_relay_are_published_when_one_starts(
    db: Database, database_url: str, broker: Broker, listener: ChangeListener, provider_id: str
) -> None:
    applier = AssetApplier(db)
    events = [upserted(provider_id, f"a{i}", at(i)) for i in range(8)]
    await applier.apply(events[:5])
    await applier.apply(events[5:])
    relay = await _relay(database_url, broker)
    try:
        entries = await listener.wait_for(8)
        assert [e["event_id"] for e in entries] == [str(e.event_id) for e in events]
        assert all(e["type"] == "asset.upserted" for e in entries)
        # Then new changes flow as they commit.
        later = upserted(provider_id, "a0", at(30))
        await applier.apply([later])
        entries = await listener.wait_for(9)
        assert entries[-1]["event_id"] == str(later.event_id)
    finally:
        await relay.stop()
    mark = await db.fetchrow("SELECT xid::text, change_id FROM change_relays")
    last = await db.fetchrow(
        "SELECT xid::text, change_id FROM asset_changes ORDER BY xid DESC, change_id DESC LIMIT 1"
    )
    assert mark == last
    assert len(listener.entries) == 9  # each once: nothing crashed


async def test_one_replica_relays_at_a_time_and_another_takes_over(
    db: Database, database_url: str, broker: Broker, listener: ChangeListener, provider_id: str
) -> None:
    first = await _relay(database_url, broker)
    await eventually(lambda: asyncio.sleep(0, first.holding), bool, what="first relay holding")
    second = await _relay(database_url, broker)
    try:
        applier = AssetApplier(db)
        for i in range(6):
            await applier.apply([upserted(provider_id, f"a{i}", at(i))])
        await listener.wait_for(6)
        assert not second.holding
        await first.stop()
        await eventually(
            lambda: asyncio.sleep(0, second.holding), bool, what="second relay taking over"
        )
        await applier.apply([upserted(provider_id, "after", at(9))])
        entries = await listener.wait_for(7)
    finally:
        await first.stop()
        await second.stop()
    ids = [e["event_id"] for e in entries]
    assert len(ids) == len(set(ids)) == 7


async def test_a_relay_whose_database_goes_silent_gives_its_connection_up_and_takes_over_again(
    db: Database, database_url: str, broker: Broker, listener: ChangeListener, provider_id: str
) -> None:
    """The holder's connection goes half-open (nothing comes back, no reset): its statement
    times out and it stops claiming the relay instead of waiting for ever. Once the server has
    ended the silent session (as its keepalives do when a host vanished), the same replica takes
    the lock on a new connection and relays what committed meanwhile."""
    proxy = await TcpProxy.in_front_of(database_url)
    relay = ChangeRelay(proxy.through(database_url), broker, interval=0.05, command_timeout=1.0)
    relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, relay.holding), bool, what="relay holding")
        holder = await db.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            int(LockSpace.CHANGE_RELAY),
        )
        assert holder is not None
        proxy.stall_open_connections()
        await eventually(
            lambda: asyncio.sleep(0, relay.holding), lambda h: not h, timeout=15,
            what="the relay giving its silent connection up",
        )  # fmt: skip
        applier = AssetApplier(db)
        await applier.apply([upserted(provider_id, "meanwhile", at(1))])
        assert await db.fetchval("SELECT pg_terminate_backend($1)", holder)
        await eventually(
            lambda: asyncio.sleep(0, relay.holding), bool, timeout=15, what="relay again"
        )
        entries = await listener.wait_for(1)
        assert entries[-1]["asset_id"] == "meanwhile"
    finally:
        await relay.stop()
        await proxy.cut()


async def test_a_broker_outage_interrupts_the_relay_with_warnings_not_errors(
    db: Database, database_url: str, vhost_amqp_url: str, provider_id: str
) -> None:
    """The relay rides a broker outage out, as a database one: once a second it logged an
    error (fault trial), which an alert on `level: error` would page for."""
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    broker = Broker(proxy.through(vhost_amqp_url), name="relay-outage", publish_timeout=1.0)
    broker.start()
    await broker.wait_ready(timeout=30)
    relay = ChangeRelay(database_url, broker, interval=0.05)
    relay.start()
    try:
        with capture_logs() as logs:
            await proxy.cut()
            await AssetApplier(db).apply([upserted(provider_id, "out-1", at(1))])
            await eventually(
                lambda: asyncio.sleep(0, [e for e in logs if "relay interrupted" in e["event"]]),
                bool,
                what="the relay interrupted",
            )
        interrupted = [e for e in logs if "relay interrupted" in e["event"]]
        assert {e["log_level"] for e in interrupted} == {"warning"}, interrupted
    finally:
        await relay.stop()
        await broker.close()
        await proxy.restore()
        await proxy.cut()
