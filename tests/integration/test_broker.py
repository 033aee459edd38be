"""Publishing with confirms and consuming with split-and-dead-letter, on a real RabbitMQ vhost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aio_pika
import pytest
import structlog
import structlog.testing
from yarl import URL

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.consumer import QUEUE_SAMPLE_SECONDS, EventConsumer
from rwasync.platform.failover import broker_urls, with_heartbeat
from rwasync.schema import topology
from rwasync.schema.events import Event
from rwasync.schema.messages import decode_message, message_for
from tests.support.events import at, upserted
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


async def _drain(
    url: str, queue: str, expected: int, timeout: float = 10
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    # Bounded at every step: on a loaded shared broker a connection handshake has been seen to
    # stall, and an unbounded wait would hang the test instead of failing (or retrying) it.
    connection = None
    for attempt in range(3):
        try:
            connection = await aio_pika.connect(url, timeout=10)
            break
        except (TimeoutError, aio_pika.exceptions.AMQPConnectionError):
            if attempt == 2:
                raise
            await asyncio.sleep(1)
    assert connection is not None
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await asyncio.wait_for(connection.channel(), 10)
        q = await channel.declare_queue(queue, passive=True, timeout=10)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            message = await q.get(fail=False, timeout=5)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            got.append(message)
    finally:
        await asyncio.wait_for(connection.close(), 10)
    return got


async def test_publish_is_confirmed_persistent_and_routed(
    broker: Broker, vhost_amqp_url: str
) -> None:
    events = [upserted("prv_x", f"a{i}", at(i)) for i in range(3)]
    single = message_for(events[:1])
    batch = message_for(events)
    await asyncio.gather(
        broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", single),
        broker.publish(topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, batch),
    )
    got = await _drain(vhost_amqp_url, topology.RECONCILER_QUEUE, 2)
    assert len(got) == 2
    by_id = {m.message_id: m for m in got}
    assert by_id[str(events[0].event_id)].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert decode_message(by_id[str(batch.message_id)].body) == batch
    # Nothing leaked onto the price queue.
    assert await _drain(vhost_amqp_url, topology.PRICING_QUEUE, 1, timeout=0.5) == []


async def test_topology_declaration_is_idempotent(vhost_amqp_url: str) -> None:
    for _ in range(2):
        b = Broker(vhost_amqp_url, name="again")
        b.start()
        await b.wait_ready(timeout=30)
        assert b.is_ready()
        await b.close()


async def test_publish_without_broker_raises() -> None:
    b = Broker("amqp://guest:guest@127.0.0.1:1/", name="nowhere")
    b.start()
    with pytest.raises(BrokerUnavailable):
        await b.publish(
            topology.ASSETS_EXCHANGE, "asset.upserted", message_for([upserted("p", "a", at(0))])
        )
    assert not b.is_ready()
    await b.close()


class _PoisonSensitiveApplier:
    """A real applier's contract: raises for events it can never apply; records what it applied."""

    def __init__(self, poison: set[str]) -> None:
        self.poison = poison
        self.applied: list[str] = []
        self.noted: list[tuple[str, str]] = []

    async def apply(self, events: Sequence[Event]) -> None:
        bad = [e.asset_id for e in events if e.asset_id in self.poison]
        if bad:
            raise ValueError(f"cannot apply {bad}")
        self.applied.extend(e.asset_id for e in events)

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        self.noted.extend((e.asset_id, reason) for e in events)


async def test_poison_event_is_dead_lettered_alone_and_the_rest_applied(
    broker: Broker, vhost_amqp_url: str
) -> None:
    events = [upserted("prv_x", f"a{i}", at(i)) for i in range(8)]
    applier = _PoisonSensitiveApplier({"a5"})
    consumer = EventConsumer(broker, topology.RECONCILER_QUEUE, applier, prefetch=4)
    consumer.start()
    await broker.publish(topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(events))
    dead = await _drain(vhost_amqp_url, topology.dead_letter_queue(topology.RECONCILER_QUEUE), 1)
    for _ in range(100):
        if len(applier.applied) == 7:
            break
        await asyncio.sleep(0.05)
    await consumer.stop()
    assert sorted(applier.applied) == sorted(f"a{i}" for i in range(8) if i != 5)
    assert len(dead) == 1
    (only,) = decode_message(dead[0].body).events
    assert only.asset_id == "a5"
    assert "cannot apply" in str(dead[0].headers[topology.HEADER_REASON])
    assert applier.noted and applier.noted[0][0] == "a5"
    # The original message was acked: nothing is left on the work queue.
    assert await _drain(vhost_amqp_url, topology.RECONCILER_QUEUE, 1, timeout=0.5) == []


class _SlowApplier(_PoisonSensitiveApplier):
    """Takes a while per apply, like one over a slow link to the database; records each apply."""

    def __init__(self, poison: set[str]) -> None:
        super().__init__(poison)
        self.applies: list[list[str]] = []

    async def apply(self, events: Sequence[Event]) -> None:
        self.applies.append([e.asset_id for e in events])
        await asyncio.sleep(0.05)
        await super().apply(events)


async def test_a_backlog_of_small_messages_is_applied_in_groups_and_a_poison_one_fails_alone(
    broker: Broker, vhost_amqp_url: str
) -> None:
    """Forty single-event messages wait behind one apply at a time: they are applied many per
    apply; an event two messages carry is applied once; the poison message's group is applied
    again message by message, so only the poison event is dead-lettered."""
    events = [upserted("prv_x", f"a{i}", at(i)) for i in range(40)]
    applier = _SlowApplier({"a17"})
    consumer = EventConsumer(broker, topology.RECONCILER_QUEUE, applier, prefetch=64, concurrency=1)
    await asyncio.gather(
        *(
            broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message_for([e]))
            # events[20] a second time, as a publisher's retry would
            for e in [*events[:21], events[20], *events[21:]]
        )
    )
    consumer.start()
    dead = await _drain(vhost_amqp_url, topology.dead_letter_queue(topology.RECONCILER_QUEUE), 1)
    for _ in range(100):
        if len(set(applier.applied)) >= 39:
            break
        await asyncio.sleep(0.05)
    await consumer.stop()
    assert set(applier.applied) == {f"a{i}" for i in range(40) if i != 17}
    assert [m.message_id for m in dead] == [str(events[17].event_id)]
    # Grouped: far fewer applies than messages, once the poison's group applied again message by
    # message is set aside (how many messages that group held depends on how fast they came).
    grouped = [apply for apply in applier.applies if len(apply) > 1]
    assert grouped
    failed = next(i for i, apply in enumerate(applier.applies) if "a17" in apply)
    members = set(applier.applies[failed])
    reruns = [a for a in applier.applies[failed + 1 :] if len(a) == 1 and a[0] in members]
    assert len(applier.applies) - len(reruns) < 20
    assert all(len(set(apply)) == len(apply) for apply in applier.applies)
    assert await _drain(vhost_amqp_url, topology.RECONCILER_QUEUE, 1, timeout=0.5) == []


async def test_waiting_messages_are_applied_together_up_to_the_group_size(
    broker: Broker, vhost_amqp_url: str
) -> None:
    """Messages of 100 events waiting behind one apply at a time are applied several per apply,
    at most `group_events` events in one, and never split (the reconciler's
    APPLY_GROUP_EVENTS)."""
    events = [upserted("prv_x", f"a{i}", at(i)) for i in range(1000)]
    applier = _SlowApplier(set())
    consumer = EventConsumer(
        broker, topology.RECONCILER_QUEUE, applier, prefetch=64, concurrency=1, group_events=300
    )
    await asyncio.gather(
        *(
            broker.publish(
                topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(events[i : i + 100])
            )
            for i in range(0, 1000, 100)
        )
    )
    consumer.start()
    for _ in range(200):
        if len(applier.applied) >= 1000:
            break
        await asyncio.sleep(0.05)
    await consumer.stop()
    assert sorted(applier.applied) == sorted(e.asset_id for e in events)
    sizes = [len(apply) for apply in applier.applies]
    assert max(sizes) == 300 and all(size % 100 == 0 for size in sizes), sizes
    assert await _drain(vhost_amqp_url, topology.RECONCILER_QUEUE, 1, timeout=0.5) == []


class _OverlapApplier(_PoisonSensitiveApplier):
    """Records the most applies it had under way at once."""

    def __init__(self) -> None:
        super().__init__(set())
        self.running = self.peak = 0

    async def apply(self, events: Sequence[Event]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.1)
            await super().apply(events)
        finally:
            self.running -= 1


async def test_consumers_of_a_queue_share_their_applies_at_once(
    broker: Broker, vhost_amqp_url: str
) -> None:
    """With `concurrency_shared` (the reconciler's), APPLIES_AT_ONCE is for all the queue's
    consumers together: alone a consumer runs 2 applies at once, beside another 1 each, and 2
    again once the other left."""

    def shared(applier: _OverlapApplier) -> EventConsumer[Event]:
        return EventConsumer(
            broker,
            topology.RECONCILER_QUEUE,
            applier,
            prefetch=8,
            concurrency=2,
            group_events=1,  # one message per apply: the applies at once show
            concurrency_shared=True,
        )

    async def publish(tag: str) -> list[str]:
        ids = [f"{tag}{i}" for i in range(8)]
        for asset_id in ids:
            event = upserted("prv_x", asset_id, at(0))
            await broker.publish(
                topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for([event])
            )
        return ids

    async def settled(check: Callable[[], bool]) -> None:
        for _ in range(int(4 * QUEUE_SAMPLE_SECONDS / 0.05)):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("not settled in two queue samples")

    first, second = _OverlapApplier(), _OverlapApplier()
    a = shared(first)
    a.start()
    await settled(a.is_consuming)
    assert a.applies_at_once == 2
    alone = await publish("alone")
    await settled(lambda: len(first.applied) == 8)
    assert sorted(first.applied) == sorted(alone) and first.peak == 2

    b = shared(second)
    b.start()
    await settled(lambda: b.is_consuming() and a.applies_at_once == 1)
    assert b.applies_at_once == 1  # it counted the consumer already there
    first.peak = 0
    together = await publish("together")
    await settled(lambda: len(first.applied) + len(second.applied) == 16)
    assert sorted(first.applied[8:] + second.applied) == sorted(together)
    assert first.peak == 1 and second.peak == 1

    await b.stop()
    await settled(lambda: a.applies_at_once == 2)
    await a.stop()


async def test_malformed_message_is_dead_lettered(broker: Broker, vhost_amqp_url: str) -> None:
    applier = _PoisonSensitiveApplier(set())
    consumer = EventConsumer(broker, topology.RECONCILER_QUEUE, applier)
    consumer.start()
    await broker.publish_body(
        topology.ASSETS_EXCHANGE, "asset.upserted", b"{not json", message_id="m1"
    )
    dead = await _drain(vhost_amqp_url, topology.dead_letter_queue(topology.RECONCILER_QUEUE), 1)
    await consumer.stop()
    assert [m.body for m in dead] == [b"{not json"]
    assert "malformed" in str(dead[0].headers[topology.HEADER_REASON])


def test_broker_urls_reads_a_comma_separated_list() -> None:
    assert broker_urls("amqp://a:5672/") == ["amqp://a:5672/"]
    assert broker_urls(" amqp://a/v , amqp://b/v,, amqp://c/v ") == [
        "amqp://a/v",
        "amqp://b/v",
        "amqp://c/v",
    ]
    with pytest.raises(ValueError):
        broker_urls(" , ")


def test_services_ask_for_a_short_heartbeat_unless_the_address_names_one() -> None:
    assert with_heartbeat("amqp://g:g@a:5672/") == "amqp://g:g@a:5672/?heartbeat=10"
    assert with_heartbeat("amqp://a/vh?heartbeat=30") == "amqp://a/vh?heartbeat=30"
    assert with_heartbeat("amqp://a/vh?name=x") == "amqp://a/vh?name=x&heartbeat=10"


@pytest.mark.slow
async def test_a_broker_gone_silent_is_left_for_a_new_connection_within_a_minute(
    vhost_amqp_url: str,
) -> None:
    """The broker's network vanishes under an open connection (no reset, no close; new
    connections get through): publishes time out, and within about three heartbeat periods
    (33 s) the connection counts as lost and the next one confirms again, where aiormq's default
    heartbeat would take over three minutes. Slow: `make test-faults`."""
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    b = Broker(proxy.through(vhost_amqp_url), publish_timeout=2.0, name="silent-broker")
    b.start()
    loop = asyncio.get_running_loop()

    async def publish() -> None:
        await b.publish_body(
            topology.CHANGES_EXCHANGE, "probe", b"{}", message_id="probe", mandatory=False
        )

    try:
        await b.wait_ready(timeout=30)
        await publish()
        proxy.stall_open_connections()
        silent = loop.time()
        with pytest.raises(BrokerUnavailable):
            await publish()
        confirmed_after = None
        while loop.time() - silent < 120:
            try:
                await publish()
                confirmed_after = loop.time() - silent
                break
            except BrokerUnavailable:
                await asyncio.sleep(1)
        print(f"FIGURES silent_broker confirmed_again_after_s={confirmed_after}")
        assert confirmed_after is not None and confirmed_after < 60
    finally:
        await b.close()
        await proxy.cut()


async def test_first_connect_skips_an_address_that_refuses(vhost_amqp_url: str) -> None:
    dead = str(URL(vhost_amqp_url).with_port(1))
    b = Broker(f"{dead},{vhost_amqp_url}", name="failover-first", first=0)
    b.start()
    try:
        await b.wait_ready(timeout=30)
        assert b.is_ready()
        assert b.connection.url.port == URL(vhost_amqp_url).port
    finally:
        await b.close()


async def test_a_lost_connection_fails_over_and_the_consumer_consumes_again(
    vhost_amqp_url: str,
) -> None:
    """The first address (a proxy) is cut: the connection moves to the second address, its
    channels come back there, and the consumer applies what is published afterwards."""
    direct = URL(vhost_amqp_url)
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    proxied = proxy.through(vhost_amqp_url)
    # Started on the proxy, so that cutting it is what moves the connection.
    b = Broker(f"{proxied},{vhost_amqp_url}", name="failover-lost", first=0)
    applier = _PoisonSensitiveApplier(set())
    consumer = EventConsumer(b, topology.RECONCILER_QUEUE, applier)
    b.start()
    consumer.start()
    try:
        await b.wait_ready(timeout=30)
        assert b.connection.url.port == proxy.port
        for _ in range(200):
            if consumer.is_consuming():
                break
            await asyncio.sleep(0.05)
        with structlog.testing.capture_logs() as logged:
            await proxy.cut()  # resets the connection; the proxy's port now refuses
            for _ in range(300):
                if b.is_ready() and b.connection.url.port == direct.port:
                    break
                await asyncio.sleep(0.05)
            for _ in range(100):  # the restore's callbacks run once its channels are back
                if any(e["event"] == "broker connection restored" for e in logged):
                    break
                await asyncio.sleep(0.05)
        assert b.connection.url.port == direct.port
        # the service says it itself (an operator's trial found only aio-pika's channel errors)
        events = [e["event"] for e in logged if e["event"].startswith("broker connection")]
        assert events == ["broker connection lost; reconnecting", "broker connection restored"]
        for _ in range(300):  # publishing may race the channel's restore: retry until confirmed
            try:
                await b.publish(
                    topology.ASSETS_EXCHANGE,
                    "asset.upserted",
                    message_for([upserted("prv_x", "after", at(1))]),
                )
                break
            except BrokerUnavailable:
                await asyncio.sleep(0.05)
        for _ in range(300):
            if applier.applied:
                break
            await asyncio.sleep(0.05)
        assert applier.applied == ["after"]
    finally:
        await consumer.stop()
        await b.close()
        await proxy.cut()


async def test_a_refused_login_is_said_once_and_a_cli_gives_up_at_once(vhost_amqp_url: str) -> None:
    """A wrong password is no outage: a CLI command retried it for 30 s, then blamed the broker
    being away; a service warned of each retry and never said the login was refused (operator
    trial). A service keeps trying (the password may be put right on the broker's side)."""
    wrong = str(URL(vhost_amqp_url).with_password("not-the-password"))
    broker = Broker(wrong, name="rwasync-test")
    with structlog.testing.capture_logs() as logged:
        broker.start()
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(BrokerUnavailable, match="RabbitMQ refused the login"):
                await broker.wait_ready(timeout=20, give_up_on_refused_login=True)
            assert asyncio.get_running_loop().time() - started < 10
            with pytest.raises(TimeoutError):  # a service waits on
                await broker.wait_ready(timeout=1.5)
        finally:
            await broker.close()
    refusals = [e for e in logged if e["log_level"] == "error"]
    assert [e["event"] for e in refusals] == [
        "RabbitMQ refused the login: check the user, password and vhost in RWASYNC_AMQP_URL"
    ]


async def test_a_broker_that_stops_confirming_is_not_ready_until_it_confirms_again(
    vhost_amqp_url: str,
) -> None:
    """A stalled broker (no bytes, no reset) keeps its connection for ~3 heartbeats, in which
    every write was a 503 while `/readyz` said ready (fault trial). A publish unconfirmed within
    its timeout makes the readiness check say no, while publishes are still tried; one
    confirmed makes it say yes again."""
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    b = Broker(proxy.through(vhost_amqp_url), name="stalled", publish_timeout=0.5)
    b.start()
    message = message_for([upserted("prv_x", "stalled-1", at(1))])
    try:
        await b.wait_ready(timeout=30)
        assert b.answering()
        proxy.pause()
        with pytest.raises(BrokerUnavailable, match="not confirmed"):
            await b.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message)
        assert b.is_ready() and not b.answering()
        proxy.resume()
        await b.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message)
        assert b.answering()
    finally:
        proxy.resume()
        await b.close()
        await proxy.cut()


async def test_an_outage_is_one_line_when_lost_and_one_when_restored(vhost_amqp_url: str) -> None:
    """Each failed reconnect attempt closes the connection again: a 10 s outage logged `broker
    connection lost` once a second (fault trial)."""
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    b = Broker(proxy.through(vhost_amqp_url), name="outage-lines")
    b.start()
    try:
        await b.wait_ready(timeout=30)
        with structlog.testing.capture_logs() as logged:
            await proxy.cut()  # resets the connection; the proxy's port now refuses
            await asyncio.sleep(3.5)  # reconnect attempts, a second apart
            await proxy.restore()
            for _ in range(300):
                if any(e["event"] == "broker connection restored" for e in logged):
                    break
                await asyncio.sleep(0.05)
        events = [e["event"] for e in logged if e["event"].startswith("broker connection")]
        assert events == ["broker connection lost; reconnecting", "broker connection restored"]
    finally:
        await b.close()
        await proxy.cut()
