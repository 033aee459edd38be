"""The fault suite's disposable servers: a private RabbitMQ node and Postgres cluster can be
killed with SIGKILL and started again, data intact, without touching the shared servers."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import pytest

from tests.support.private_servers import private_postgres, private_rabbit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_a_private_postgres_survives_kill9_with_its_data() -> None:
    with private_postgres() as pg:
        conn = await asyncpg.connect(pg.url())
        await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        await conn.close()
        await asyncio.to_thread(pg.kill9)
        with pytest.raises(OSError):
            await asyncpg.connect(pg.url(), timeout=2)
        await asyncio.to_thread(pg.start)
        conn = await asyncpg.connect(pg.url())
        assert await conn.fetchval("SELECT n FROM kept") == 42
        await conn.close()


async def test_a_private_rabbit_keeps_durable_messages_across_kill9_and_raises_alarms() -> None:
    with private_rabbit() as node:
        connection = await aio_pika.connect(node.url())
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "kept", durable=True, arguments={"x-queue-type": "quorum"}
        )
        # RabbitMQ 3.10 syncs a new quorum queue's Raft metadata lazily: a node killed within
        # seconds of the declaration brings the queue back without its log or leader (seen here).
        # The services declare their queues at start, long before any fault; so does this test.
        await asyncio.sleep(12)
        await channel.default_exchange.publish(
            aio_pika.Message(b"x", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "kept"
        )
        await connection.close()
        await asyncio.to_thread(node.kill9)
        await asyncio.to_thread(node.start)
        connection = await aio_pika.connect(node.url())
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "kept", durable=True, arguments={"x-queue-type": "quorum"}
        )
        message = await queue.get(timeout=30)
        assert message.body == b"x"
        await connection.close()
        await asyncio.to_thread(node.memory_alarm, True)
        alarms = (await asyncio.to_thread(node.ctl, "eval", "rabbit_alarm:get_alarms().")).stdout
        assert "memory" in alarms
        await asyncio.to_thread(node.memory_alarm, False)
