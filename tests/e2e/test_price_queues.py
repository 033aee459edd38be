"""Prices and asset changes travel on separate queues: a burst of ticks waiting for pricing never
delays an asset change, and a backlog of asset changes never delays a price. Each side's consumer
is stopped while the other side's change goes through, so the test does not depend on timing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import aio_pika
import aiohttp
import pytest

from rwasync.platform.broker import Broker
from rwasync.schema import topology
from rwasync.schema.messages import message_for
from rwasync.schema.timestamps import utc_now
from tests.e2e.test_flows import bearer, now, put_asset, receipt
from tests.support.events import asset_doc, price, upserted
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

BURST_MESSAGES = 40
TICKS_PER_MESSAGE = 500


@asynccontextmanager
async def stopped(system: System, name: str) -> AsyncIterator[None]:
    system.services[name].stop()
    try:
        yield
    finally:
        system.start(name)


@asynccontextmanager
async def broker(system: System) -> AsyncIterator[Broker]:
    connected = Broker(system.amqp_url, name="test-burst")
    connected.start()
    await connected.wait_ready(30)
    try:
        yield connected
    finally:
        await connected.close()


async def depth(system: System, queue: str) -> int:
    connection = await aio_pika.connect(system.amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return int(count or 0)
    finally:
        await connection.close()


async def test_a_burst_of_ticks_never_delays_an_asset_change(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    provider_id = provider["provider_id"]
    start = utc_now()
    async with stopped(system, "pricing"), broker(system) as publisher:
        for m in range(BURST_MESSAGES):
            ticks = [
                price(provider_id, f"burst-{i}", f"{m + 1}", start, accepted_at=start)
                for i in range(TICKS_PER_MESSAGE)
            ]
            await publisher.publish(
                topology.PRICES_EXCHANGE, topology.PRICE_BATCH_KEY, message_for(ticks)
            )
        assert await depth(system, topology.PRICING_QUEUE) >= BURST_MESSAGES
        accepted = await put_asset(http, system, provider, asset_doc("queue-1", now()))
        assert (await receipt(http, system, provider, accepted["event_id"]))["status"] == "applied"
        # The change went through while the whole burst still waits on its own queue.
        assert await depth(system, topology.PRICING_QUEUE) >= BURST_MESSAGES
    # Pricing back: the burst drains.

    async def backlog() -> int:
        return await depth(system, topology.PRICING_QUEUE)

    await eventually(backlog, lambda n: n == 0, timeout=120, what="the burst applied")


async def test_a_backlog_of_asset_changes_never_delays_a_price(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], reader: dict[str, str]
) -> None:
    provider_id = provider["provider_id"]
    start = utc_now()
    async with stopped(system, "reconciler"), broker(system) as publisher:
        for m in range(BURST_MESSAGES):
            events = [upserted(provider_id, f"backlog-{m}-{i}", start) for i in range(50)]
            await publisher.publish(
                topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(events)
            )
        assert await depth(system, topology.RECONCILER_QUEUE) >= BURST_MESSAGES
        async with http.put(
            f"{system.url('ingest-api')}/v1/assets/queue-2/price",
            json={"amount": "49.75", "currency": "USD", "as_of": now().isoformat()},
            headers=bearer(provider),
        ) as response:
            assert response.status == 202
        url = f"{system.url('pricing')}/v1/prices/{provider_id}/queue-2"

        async def amount() -> Decimal | None:
            async with http.get(url, headers=bearer(reader)) as answer:
                return Decimal((await answer.json())["amount"]) if answer.status == 200 else None

        assert await eventually(amount, lambda a: a is not None) == Decimal("49.75")
        assert await depth(system, topology.RECONCILER_QUEUE) >= BURST_MESSAGES
