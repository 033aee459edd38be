"""Wiring of the pricing service: consume the price queue, apply, serve the investor price API."""

from __future__ import annotations

from aiohttp import web

from rwasync.platform.broker import Broker
from rwasync.platform.consumer import EventConsumer
from rwasync.platform.db import Database
from rwasync.platform.http import add_health_routes, new_app, run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import broker_check, connections_context, database_check
from rwasync.pricing.api import PriceRoutes, ReaderAuth
from rwasync.pricing.apply import PriceApplier
from rwasync.pricing.settings import PricingSettings
from rwasync.schema import topology


def create_app(settings: PricingSettings) -> web.Application:
    db = Database(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    broker = Broker(settings.amqp_url, publish_timeout=settings.publish_timeout, name="pricing")
    consumer = EventConsumer(
        broker, topology.PRICING_QUEUE, PriceApplier(db), prefetch=settings.prefetch
    )

    async def consuming() -> tuple[str, bool]:
        return "consumer", consumer.is_consuming()

    app = new_app()
    add_health_routes(app, [database_check(db), broker_check(broker), consuming])
    PriceRoutes(db, ReaderAuth(db, settings.auth_cache_seconds)).register(app)
    app.cleanup_ctx.append(
        connections_context(db, broker, on_start=[consumer.start], on_stop=[consumer.stop])
    )
    return app


def main() -> None:
    settings = PricingSettings()
    configure_logging("pricing", settings.log_level, settings.log_format)
    run(create_app(settings), settings.host, settings.port)
