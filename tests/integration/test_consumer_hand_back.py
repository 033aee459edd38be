"""A replica consumes only while its database answers: one that cannot reach it takes no messages
from the queue its peers share, and one whose database goes away hands back the messages it holds
and consumes again once the database answers. Before, such a replica took its prefetch and held
it, retrying, while a healthy replica beside it sat idle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from rwasync.platform.broker import Broker
from rwasync.platform.consumer import EventConsumer
from rwasync.platform.db import Database, DatabaseUnavailable
from rwasync.schema import topology
from rwasync.schema.events import Event
from rwasync.schema.messages import message_for
from tests.support.events import at, upserted
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


class _Store:
    """A database that answers or not, as the test says."""

    def __init__(self, *, connected: bool = True) -> None:
        self.connected = asyncio.Event()
        if connected:
            self.connected.set()
        self.answers = connected

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def ping(self, timeout: float = 2.0) -> bool:
        return self.answers


class _Applier:
    """Applies while its store answers; else fails as a real applier does (transiently)."""

    def __init__(self, store: _Store | None = None) -> None:
        self.store = store
        self.applied: list[str] = []

    async def apply(self, events: Sequence[Event]) -> None:
        if self.store is not None and not self.store.answers:
            raise DatabaseUnavailable("the database does not answer")
        self.applied.extend(e.asset_id for e in events)

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        pass


async def _publish(broker: Broker, names: Sequence[str]) -> None:
    for name in names:
        await broker.publish(
            topology.ASSETS_EXCHANGE,
            "asset.upserted",
            message_for([upserted("prv_x", name, at(1))]),
        )


async def _until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def test_a_replica_that_cannot_reach_its_database_takes_no_messages(
    broker: Broker,
) -> None:
    # A real pool that can never connect (nothing listens on port 1).
    unreachable = Database("postgresql://postgres@127.0.0.1:1/nothing")
    unreachable.start()
    stranded = _Applier()
    broken = EventConsumer(broker, topology.RECONCILER_QUEUE, stranded, store=unreachable)
    healthy_applier = _Applier()
    healthy = EventConsumer(broker, topology.RECONCILER_QUEUE, healthy_applier, store=_Store())
    broken.start()
    healthy.start()
    try:
        await _until(healthy.is_consuming)
        names = [f"a{i}" for i in range(20)]
        await _publish(broker, names)
        await _until(lambda: len(healthy_applier.applied) == 20)
        assert sorted(healthy_applier.applied) == sorted(names)
        assert stranded.applied == []
        assert not broken.is_consuming()  # its /readyz says so
    finally:
        await broken.stop()
        await healthy.stop()
        await unreachable.close()


async def test_a_replica_whose_database_goes_away_hands_its_messages_back_and_comes_back(
    broker: Broker,
) -> None:
    store = _Store()
    first_applier = _Applier(store)
    first = EventConsumer(
        broker, topology.RECONCILER_QUEUE, first_applier, store=store, hand_back_after=0.5
    )
    first.start()
    second: EventConsumer[Event] | None = None
    try:
        await _until(first.is_consuming)
        await _publish(broker, ["before"])
        await _until(lambda: first_applier.applied == ["before"])

        store.answers = False
        held = [f"held{i}" for i in range(5)]
        await _publish(broker, held)
        await _until(lambda: not first.is_consuming())  # stepped back

        # Handed back to the queue: a replica that reaches the database applies them all.
        second_applier = _Applier()
        second = EventConsumer(broker, topology.RECONCILER_QUEUE, second_applier, store=_Store())
        second.start()
        await _until(lambda: sorted(second_applier.applied) == sorted(held))
        assert first_applier.applied == ["before"]

        store.answers = True
        await _until(first.is_consuming)
        later = [f"later{i}" for i in range(10)]
        await _publish(broker, later)
        await _until(lambda: len(first_applier.applied) + len(second_applier.applied) == 16)
        assert len(first_applier.applied) > 1  # it takes its share again
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def test_without_a_store_a_transient_failure_is_retried_in_place(broker: Broker) -> None:
    store = _Store()
    applier = _Applier(store)
    consumer = EventConsumer(broker, topology.RECONCILER_QUEUE, applier, hand_back_after=0.1)
    consumer.start()
    try:
        await _until(consumer.is_consuming)
        store.answers = False
        await _publish(broker, ["kept"])
        await asyncio.sleep(1.0)
        assert consumer.is_consuming()  # no database to check: it keeps the message, retrying
        store.answers = True
        await _until(lambda: applier.applied == ["kept"])
    finally:
        await consumer.stop()


class _DatabaseApplier:
    """Applies with a statement on a real database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.applied: list[str] = []

    async def apply(self, events: Sequence[Event]) -> None:
        await self.db.execute("SELECT 1")
        self.applied.extend(e.asset_id for e in events)

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        pass


async def test_a_replica_whose_database_stops_answering_mid_apply_hands_back_soon(
    broker: Broker, database_url: str
) -> None:
    """A database that stops answering (connections open, nothing comes back) stalls an apply
    until the statement's 60 s timeout; the replica notices when the apply has run for
    `hand_back_after` and its database does not answer a ping, and hands its messages back
    then, for a replica that reaches the database to apply."""
    proxy = await TcpProxy.in_front_of(database_url)
    silent = Database(proxy.through(database_url), min_size=1, max_size=2)
    silent.start()
    await silent.wait_connected(timeout=30)
    stalled = _DatabaseApplier(silent)
    first = EventConsumer(
        broker, topology.RECONCILER_QUEUE, stalled, store=silent, hand_back_after=1.0
    )
    first.start()
    healthy: Database | None = None
    second: EventConsumer[Event] | None = None
    try:
        await _until(first.is_consuming)
        await _publish(broker, ["before"])
        await _until(lambda: stalled.applied == ["before"])

        proxy.pause()
        held = [f"held{i}" for i in range(5)]
        await _publish(broker, held)
        await _until(lambda: not first.is_consuming(), seconds=20)  # stepped back

        healthy = Database(database_url, min_size=1, max_size=2)
        healthy.start()
        await healthy.wait_connected(timeout=30)
        healthy_applier = _DatabaseApplier(healthy)
        second = EventConsumer(broker, topology.RECONCILER_QUEUE, healthy_applier, store=healthy)
        second.start()
        started = asyncio.get_running_loop().time()
        await _until(lambda: sorted(healthy_applier.applied) == sorted(held), seconds=20)
        assert asyncio.get_running_loop().time() - started < 15  # not after a 60 s timeout
        assert stalled.applied == ["before"]
    finally:
        proxy.resume()
        await first.stop()
        if second is not None:
            await second.stop()
        await silent.close()
        if healthy is not None:
            await healthy.close()
        await proxy.cut()
