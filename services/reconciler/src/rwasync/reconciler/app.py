"""Wiring of the reconciler: consume the asset queue, apply, serve health and metrics."""

from __future__ import annotations

from aiohttp import web

from rwasync.platform.broker import Broker
from rwasync.platform.consumer import EventConsumer
from rwasync.platform.db import Database
from rwasync.platform.http import add_health_routes, new_app, run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import broker_check, connections_context, database_check
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.settings import ReconcilerSettings
from rwasync.schema import topology


def create_app(settings: ReconcilerSettings) -> web.Application:
    db = Database(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    broker = Broker(settings.amqp_url, publish_timeout=settings.publish_timeout, name="reconciler")
    consumer = EventConsumer(
        broker, topology.RECONCILER_QUEUE, AssetApplier(db), prefetch=settings.prefetch
    )

    async def consuming() -> tuple[str, bool]:
        return "consumer", consumer.is_consuming()

    app = new_app()
    add_health_routes(app, [database_check(db), broker_check(broker), consuming])
    app.cleanup_ctx.append(
        connections_context(db, broker, on_start=[consumer.start], on_stop=[consumer.stop])
    )
    return app


def main() -> None:
    settings = ReconcilerSettings()
    configure_logging("reconciler", settings.log_level, settings.log_format)
    run(create_app(settings), settings.host, settings.port)
