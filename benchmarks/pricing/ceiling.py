"""The raw broker ceiling on this machine: 187-byte persistent messages published with
pipelined confirms to a quorum queue and consumed at once, with nothing else done per message."""

from __future__ import annotations

import asyncio
import time

import aio_pika

BODY = b"x" * 187


async def broker_ceiling(amqp_url: str, messages: int, window: int = 256) -> float:
    """Messages per second, published and consumed end to end."""
    connection = await aio_pika.connect(amqp_url)
    try:
        publishing = await connection.channel(publisher_confirms=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=window)
        queue = await consuming.declare_queue(
            "bench.ceiling", durable=True, arguments={"x-queue-type": "quorum"}
        )
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == messages:
                done.set()

        await queue.consume(on_message)
        slots = asyncio.Semaphore(window)
        began = time.perf_counter()

        async def publish_one() -> None:
            async with slots:
                await publishing.default_exchange.publish(
                    aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="bench.ceiling",
                )

        await asyncio.gather(*(publish_one() for _ in range(messages)))
        await asyncio.wait_for(done.wait(), 600)
        rate = messages / (time.perf_counter() - began)
        await queue.delete(if_unused=False, if_empty=False)
        return rate
    finally:
        await connection.close()
