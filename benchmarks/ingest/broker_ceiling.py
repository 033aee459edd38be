"""The broker ceiling: persistent messages of `events` asset events each (one: a single PUT's),
published with aio-pika on one confirm channel with `window` publishes in flight (pipelined
confirms) into a quorum queue like the reconciler's. Returns messages/s and per-publish
latencies."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aio_pika

from rwasync.schema import topology
from rwasync.schema.asset import content_hash_hex, normalized_document, parse_asset
from rwasync.schema.events import Arrival, EventSource, asset_upserted
from rwasync.schema.messages import encode_message, message_for

EXCHANGE = "bench.ceiling"
QUEUE = "bench.ceiling.assets"


def sample_body(events: int) -> bytes:
    now = datetime.now(UTC)
    asset = parse_asset(
        {
            "id": "ceiling-1",
            "updated_at": "2026-01-01T00:00:00Z",
            "status": "active",
            "name": "1 Bench Street, Detroit, MI",
            "price": {"amount": "52.10", "currency": "USD"},
        }
    )
    document = normalized_document(asset)
    event = asset_upserted(
        Arrival("prv_bench", EventSource.PUSH, now),
        asset_id=asset.id,
        updated_at=asset.updated_at,
        accepted_at=now,
        document=document,
        content_hash=content_hash_hex(document),
    )
    return encode_message(message_for([event] * events))


async def measure(
    amqp_url: str, seconds: float, window: int, events: int = 1
) -> tuple[float, list[float]]:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(
            QUEUE, durable=True, arguments=dict(topology.work_queue_arguments(QUEUE))
        )
        await queue.bind(exchange, "#")
        body = sample_body(events)
        latencies: list[float] = []
        stop = time.monotonic() + seconds

        async def publisher() -> None:
            while time.monotonic() < stop:
                began = time.perf_counter()
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    "asset.upserted",
                    mandatory=True,
                )
                latencies.append(time.perf_counter() - began)

        began = time.monotonic()
        await asyncio.gather(*(publisher() for _ in range(window)))
        elapsed = time.monotonic() - began
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
        return len(latencies) / elapsed, latencies
    finally:
        await connection.close()
