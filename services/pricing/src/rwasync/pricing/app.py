"""Wiring of the pricing service: consume the price queue and apply, keep the stream's hub and
the history partitions, serve the investor price API and its stream (described at
`/v1/openapi.json`, browsable at `/docs`) and the live demo page."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from rwasync.platform.auth import BEARER_ONLY, Authenticator, FailedAuthentications
from rwasync.platform.clients import ClientAddresses
from rwasync.platform.db import Database
from rwasync.platform.http import run, tune_garbage_collector
from rwasync.platform.logging import configure_logging
from rwasync.platform.openapi import ApiRegistry
from rwasync.platform.service import consuming_service
from rwasync.platform.settings import load_settings
from rwasync.pricing import params
from rwasync.pricing.api import PriceRoutes
from rwasync.pricing.apply import PriceApplier
from rwasync.pricing.demo_page import add_demo_page
from rwasync.pricing.hub import ChangeHub
from rwasync.pricing.settings import PricingSettings
from rwasync.pricing.stream import PriceStream
from rwasync.pricing.upkeep import Upkeep
from rwasync.schema import topology
from rwasync.schema.raw_events import PRICE_QUEUE_DECODER
from rwasync.store.tenants import ReaderTokens, reader_token_hint

HUB = web.AppKey("hub", ChangeHub)

SECURITY_SCHEMES = {
    "reader": {"type": "http", "scheme": "bearer", "description": "a reader token (rwr_...)"},
}


def investor_api() -> ApiRegistry:
    return ApiRegistry(
        title="rwasync investor price API",
        version="1",
        description="Latest prices, history, candles and the live stream; see docs/api.md.",
        security_schemes=SECURITY_SCHEMES,
    )


def create_app(settings: PricingSettings) -> web.Application:
    hub: ChangeHub | None = None

    def changed() -> None:
        if hub is not None:
            hub.changed()

    def applier(db: Database) -> PriceApplier:
        return PriceApplier(db, on_changes=changed, shares=settings.apply_shares)

    async def price_stream() -> tuple[str, bool]:
        # Ready only once the stream can be served: a gateway sends stream clients elsewhere
        # while this replica's hub is (re)starting.
        return "price_stream", hub is not None and hub.is_live()

    service = consuming_service(
        settings,
        name="pricing",
        queue=topology.PRICING_QUEUE,
        applier=applier,
        decoder=PRICE_QUEUE_DECODER,  # ticks as plain structs, not pydantic models
        checks=[price_stream],
        # `GET /v1/prices` documents 500 ids a request: more than aiohttp's 8190-byte line.
        max_line_size=params.MAX_REQUEST_LINE,
    )
    hub = ChangeHub(service.db, service.broker, poll_seconds=settings.stream_poll_seconds)
    upkeep = Upkeep(service.db, change_retention_seconds=settings.change_retention_seconds)
    readers = Authenticator(
        ReaderTokens(service.db),
        cache_seconds=settings.auth_cache_seconds,
        schemes=BEARER_ONLY,
        failures=FailedAuthentications(
            settings.auth_failures_per_minute, ClientAddresses(settings.trusted_proxies)
        ),
        misdirected=reader_token_hint,
    )
    app = service.app
    app[HUB] = hub
    api = investor_api()
    api.add(PriceStream(service.db, hub, readers, settings).operations())
    api.add(PriceRoutes(service.db, readers).operations())
    app.add_routes(api.routes())
    api.serve_docs(app)
    add_demo_page(app)

    async def background(_: web.Application) -> AsyncIterator[None]:
        assert hub is not None
        hub.start()
        upkeep.start()
        yield
        await upkeep.stop()
        await hub.stop()

    async def close_streams(_: web.Application) -> None:
        # on_shutdown runs once the listener is closed and before aiohttp waits for the
        # requests in flight: an open stream would otherwise hold the shutdown to its timeout.
        hub.close_subscribers()

    app.on_shutdown.append(close_streams)
    app.cleanup_ctx.append(background)
    return app


def main() -> None:
    settings = load_settings(PricingSettings)
    configure_logging("pricing", settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_garbage_collector()
    run(app, settings)
