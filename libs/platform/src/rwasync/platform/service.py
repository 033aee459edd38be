"""The one way every service is wired: settings → logging → connections opened in the background
→ an aiohttp app with health routes → serve until SIGTERM, then close in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.platform.http import ReadinessCheck


def database_check(db: Database) -> ReadinessCheck:
    async def check() -> tuple[str, bool]:
        return "database", await db.ping()

    return check


def broker_check(broker: Broker) -> ReadinessCheck:
    async def check() -> tuple[str, bool]:
        return "broker", broker.is_ready()

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
