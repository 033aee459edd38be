"""Keeping dead letters: every work queue's `.dlq` is drained into the `dead_letters` table (insert,
then ack), where `rwasync dlq` finds them. The reconciler keeps them for every work queue, the
price queue's included, so one consumer per dead-letter queue exists wherever a reconciler runs.

A dead letter the broker made (delivery limit) carries no reason of ours: its receipts are noted
here with the reason spelled out from `x-death`, as the consumer notes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from prometheus_client import Counter

from rwasync.platform.broker import Broker, field_table
from rwasync.platform.db import Database
from rwasync.platform.tasks import cancel_and_wait
from rwasync.schema import topology
from rwasync.store import dead_letters, receipts

log = structlog.get_logger(__name__)

KEPT = Counter("rwasync_dead_letters_kept_total", "Dead letters moved into the table", ["queue"])


class DeadLetterKeeper:
    def __init__(
        self, db: Database, broker: Broker, work_queues: Sequence[str] = topology.WORK_QUEUES
    ) -> None:
        self._db = db
        self._broker = broker
        self._work_queues = work_queues
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._start(), name="dead-letter-keeper")

    async def _start(self) -> None:
        await self._broker.wait_ready()
        await self._db.wait_connected()
        channel = await self._broker.connection.channel()
        await channel.set_qos(prefetch_count=16)
        self._channel = channel
        for work_queue in self._work_queues:
            name = topology.dead_letter_queue(work_queue)
            queue = await channel.declare_queue(
                name, durable=True, arguments=field_table(topology.dead_letter_queue_arguments())
            )

            async def on_message(message: AbstractIncomingMessage, dlq: str = name) -> None:
                await self._keep(message, dlq)

            self._consumers.append((queue, await queue.consume(on_message)))

    async def _keep(self, message: AbstractIncomingMessage, dlq: str) -> None:
        letter = dead_letters.dead_letter_from(
            message.message_id, message.body, message.headers or {}, dlq=dlq
        )
        try:
            async with self._db.connection() as conn, conn.transaction():
                kept_as = await dead_letters.keep(conn, letter)
                if letter.message is not None:
                    await receipts.note_dead_lettered(conn, letter.message.events, letter.reason)
        except Exception as exc:
            # Not kept: the message stays in the dead-letter queue and comes back later.
            log.warning("dead letter not kept yet", message_id=letter.message_id, error=str(exc))
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        with contextlib.suppress(Exception):  # not acked: kept again on redelivery, harmlessly
            await message.ack()
        KEPT.labels(letter.queue).inc()
        log.info(
            "dead letter kept",
            message_id=kept_as,
            queue=letter.queue,
            provider_id=letter.provider_id,
            reason=letter.reason,
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), 2)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 2)
