"""A follower of the `asset.changed` announcements: a queue of its own on the changes exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import orjson

from rwasync.schema import topology
from tests.support.waiting import eventually


class ChangeListener:
    """A queue of our own bound to every `asset.changed` message, read as a list of entries."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.entries: list[dict[str, Any]] = []
        self.message_ids: list[str] = []

    async def __aenter__(self) -> ChangeListener:
        self._connection = await aio_pika.connect(self._url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            topology.CHANGES_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=f"{topology.ASSET_CHANGED_PREFIX}.#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            body = orjson.loads(message.body)
            self.message_ids.append(str(message.message_id))
            self.entries.extend(body["changes"])
            await message.ack()

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._connection.close()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        await eventually(
            lambda: asyncio.sleep(0, len(self.entries)),
            lambda n: n >= count,
            timeout=30,
            what=f"{count} change entries published",
        )
        return self.entries
