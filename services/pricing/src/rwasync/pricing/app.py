"""Wiring of the pricing service: consume the price queue, apply, serve the investor price API."""

from __future__ import annotations

from aiohttp import web

from rwasync.platform.auth import BEARER_ONLY, Authenticator
from rwasync.platform.http import run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import consuming_service
from rwasync.pricing.api import PriceRoutes
from rwasync.pricing.apply import PriceApplier
from rwasync.pricing.settings import PricingSettings
from rwasync.schema import topology
from rwasync.store.tenants import ReaderTokens


def create_app(settings: PricingSettings) -> web.Application:
    service = consuming_service(
        settings,
        name="pricing",
        queue=topology.PRICING_QUEUE,
        applier=PriceApplier,
        prefetch=settings.prefetch,
    )
    readers = Authenticator(
        ReaderTokens(service.db), cache_seconds=settings.auth_cache_seconds, schemes=BEARER_ONLY
    )
    PriceRoutes(service.db, readers).register(service.app)
    return service.app


def main() -> None:
    settings = PricingSettings()
    configure_logging("pricing", settings.log_level, settings.log_format)
    run(create_app(settings), settings.host, settings.port)
