"""The one way every service is wired: settings → logging → connections opened in the background
→ an aiohttp app with health routes → serve until SIGTERM, then close in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rwasync.platform.broker import Broker
from rwasync.platform.consumer import Applier, E, EventConsumer
from rwasync.platform.db import Database
from rwasync.platform.http import MAX_LINE_SIZE, ReadinessCheck, add_health_routes, new_app
from rwasync.platform.settings import ConsumerSettings
from rwasync.schema.messages import MessageDecoder


def database_check(db: Database) -> ReadinessCheck:
    async def check() -> tuple[str, bool]:
        return "database", await db.ping()

    return check


def broker_check(broker: Broker) -> ReadinessCheck:
    async def check() -> tuple[str, bool]:
        return "broker", broker.answering()

    return check


def connections_context(
    db: Database,
    broker: Broker,
    *,
    on_start: Sequence[Callable[[], None]] = (),
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: open connections in the background (the app serves `/healthz`
    at once), run `on_start` hooks; on shutdown run `on_stop` hooks, then close connections."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        db.start()
        broker.start()
        for start in on_start:
            start()
        yield
        for stop in on_stop:
            await stop()
        await broker.close()
        await db.close()

    return context


@dataclass(frozen=True)
class ConsumingService:
    """The parts of a service that consumes one work queue, for its `create_app` to extend."""

    app: web.Application
    db: Database
    broker: Broker
    consumer: EventConsumer[Any]


def consuming_service(
    settings: ConsumerSettings,
    *,
    name: str,
    queue: str,
    applier: Callable[[Database], Applier[E]],
    decoder: MessageDecoder[E] | None = None,
    applies_shared: bool = False,
    checks: Sequence[ReadinessCheck] = (),
    max_line_size: int = MAX_LINE_SIZE,
) -> ConsumingService:
    """Wire a consumer of `queue`: connections, the consumer, health routes, lifecycle.
    `decoder`: how its messages become the applier's events (by default, the models).
    `applies_shared`: the setting APPLIES_AT_ONCE is for all replicas together
    (`EventConsumer`'s `concurrency_shared`). `checks`: the service's own readiness checks.
    `max_line_size`: the longest HTTP request line its API takes (`new_app`)."""
    db = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        require_schema=True,
    )
    broker = Broker(settings.amqp_url, publish_timeout=settings.publish_timeout, name=name)
    consumer = EventConsumer(
        broker,
        queue,
        applier(db),
        prefetch=settings.prefetch,
        decoder=decoder,
        concurrency=settings.applies_at_once,
        linger=settings.apply_linger,
        group_events=settings.apply_group_events,
        concurrency_shared=applies_shared,
        store=db,
        hand_back_after=settings.hand_back_after,
    )

    async def consuming() -> tuple[str, bool]:
        return "consumer", consumer.is_consuming()

    async def stop_consuming(_: web.Application) -> None:
        await consumer.stop()

    app = new_app(max_line_size=max_line_size)
    add_health_routes(app, [database_check(db), broker_check(broker), consuming, *checks])
    # Stop consuming as soon as SIGTERM arrives, while HTTP requests in flight finish alongside;
    # the connections close only after both (cleanup runs after shutdown).
    app.on_shutdown.append(stop_consuming)
    app.cleanup_ctx.append(
        connections_context(db, broker, on_start=[consumer.start], on_stop=[consumer.stop])
    )
    return ConsumingService(app, db, broker, consumer)
