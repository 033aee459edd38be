"""What the broker plumbing tells an operator, on a real RabbitMQ vhost: publish outcomes and
consumer figures on the metrics page, queue depths by passive declare, and the trace a message
carries from its publisher into its consumer's context."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
import pytest
from prometheus_client import REGISTRY

from rwasync.platform import tracing
from rwasync.platform.broker import Broker, BrokerUnavailable, queue_depths
from rwasync.platform.consumer import EventConsumer
from rwasync.schema import topology
from rwasync.schema.events import Event
from rwasync.schema.messages import message_for
from tests.support.events import at, upserted

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_publishes_are_counted_by_outcome(broker: Broker) -> None:
    exchange = topology.ASSETS_EXCHANGE
    confirmed = sample("rwasync_messages_published_total", exchange=exchange, outcome="confirmed")
    returned = sample("rwasync_messages_published_total", exchange=exchange, outcome="returned")
    event = upserted("prv_m", "a1", at(0))
    await broker.publish(exchange, "asset.upserted", message_for([event]))
    # No queue is bound to this routing key: the broker returns the mandatory message.
    with pytest.raises(BrokerUnavailable):
        await broker.publish(exchange, "nobody.listens", message_for([event]))
    assert (
        sample("rwasync_messages_published_total", exchange=exchange, outcome="confirmed")
        == confirmed + 1
    )
    assert (
        sample("rwasync_messages_published_total", exchange=exchange, outcome="returned")
        == returned + 1
    )


async def test_queue_depths_by_passive_declare(broker: Broker, vhost_amqp_url: str) -> None:
    events = [upserted("prv_d", f"a{i}", at(i)) for i in range(3)]
    for event in events:
        await broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message_for([event]))
    connection = await aio_pika.connect(vhost_amqp_url)
    try:
        depths = await queue_depths(
            connection, [topology.RECONCILER_QUEUE, "no-such-queue", topology.PRICING_QUEUE]
        )
    finally:
        await connection.close()
    # A missing queue is left out and does not hide the queues after it.
    assert depths == {topology.RECONCILER_QUEUE: (3, 0), topology.PRICING_QUEUE: (0, 0)}


class _Recording:
    """Records, per applied event, the trace id its consumer had bound while applying it."""

    def __init__(self) -> None:
        self.traces: dict[str, str] = {}

    async def apply(self, events: Sequence[Event]) -> None:
        for event in events:
            self.traces[event.asset_id] = tracing.current_trace_id.get()

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {reason}")


async def test_the_trace_travels_in_the_headers_and_the_consumer_counts(broker: Broker) -> None:
    queue = topology.RECONCILER_QUEUE
    acked = sample("rwasync_messages_consumed_total", queue=queue, outcome="acked")
    lag_count = sample("rwasync_event_lag_seconds_count", queue=queue)
    size_sum = sample("rwasync_message_events_sum", queue=queue)
    trace_id = tracing.new_trace_id()
    tracing.bind(trace_id)
    try:
        # The events carry no trace of their own: only the message header can bring it across.
        batch = [upserted("prv_t", f"t{i}", at(i)) for i in range(4)]
        await broker.publish(topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(batch))
    finally:
        tracing.bind("")
    applier = _Recording()
    consumer = EventConsumer(broker, queue, applier)
    consumer.start()
    try:
        for _ in range(200):
            if (
                len(applier.traces) == 4
                and sample("rwasync_messages_consumed_total", queue=queue, outcome="acked")
                == acked + 1
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    assert applier.traces == {f"t{i}": trace_id for i in range(4)}
    assert sample("rwasync_messages_consumed_total", queue=queue, outcome="acked") == acked + 1
    assert sample("rwasync_event_lag_seconds_count", queue=queue) == lag_count + 4
    assert sample("rwasync_message_events_sum", queue=queue) == size_sum + 4
    # The consumer sampled its queue's depth when it started.
    assert REGISTRY.get_sample_value("rwasync_queue_consumers", {"queue": queue}) is not None
