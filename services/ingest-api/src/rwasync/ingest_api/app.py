"""Wiring of ingest-api: connections opened in the background, the provider API's operations
(assets, prices, validation, feeds) and the portal's catalogue reads registered (and described at
`/v1/openapi.json`, browsable at `/docs`), health and metrics;
`main()` serves it until SIGTERM, in one process or several sharing the port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from rwasync.feeds.auth import FeedSecrets
from rwasync.feeds.fetch import FetchLimits
from rwasync.feeds.spool import sweep_leftover_spool
from rwasync.ingest_api.acceptance import AcceptanceClock, EventPublisher, PublishingLimits
from rwasync.ingest_api.asset_reads import AssetReads
from rwasync.ingest_api.asset_writes import AssetWrites
from rwasync.ingest_api.batches import Batches
from rwasync.ingest_api.bodies import BodyLimits
from rwasync.ingest_api.callers import Callers
from rwasync.ingest_api.catalog import CatalogReads
from rwasync.ingest_api.context import Ingest
from rwasync.ingest_api.feed_validation import FeedValidation, PreviewLimits
from rwasync.ingest_api.feeds import FeedRoutes, FeedRules
from rwasync.ingest_api.idempotency import IdempotencyKeys
from rwasync.ingest_api.limits import ProviderRates, Rate
from rwasync.ingest_api.prices import Prices
from rwasync.ingest_api.processes import supervise
from rwasync.ingest_api.retention import prune_receipts_forever
from rwasync.ingest_api.settings import IngestSettings
from rwasync.ingest_api.validation import Validation
from rwasync.platform.auth import BEARER_ONLY, Authenticator, FailedAuthentications
from rwasync.platform.broker import Broker
from rwasync.platform.budget import ByteBudget
from rwasync.platform.clients import ClientAddresses
from rwasync.platform.db import Database
from rwasync.platform.http import add_health_routes, new_app, run
from rwasync.platform.logging import configure_logging
from rwasync.platform.openapi import ApiRegistry
from rwasync.platform.service import broker_check, connections_context, database_check
from rwasync.platform.settings import load_settings
from rwasync.schema.addresses import AddressPolicy
from rwasync.store.tenants import (
    ProviderCredentials,
    ReaderTokens,
    provider_token_hint,
    reader_token_hint,
)

SECURITY_SCHEMES = {
    "basic": {"type": "http", "scheme": "basic", "description": "key_id:secret"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "a provider token (rwp_...)"},
    "reader": {
        "type": "http",
        "scheme": "bearer",
        "description": "a reader token (rwr_...): the portal catalogue only",
    },
}

log = structlog.get_logger(__name__)


def provider_api() -> ApiRegistry:
    return ApiRegistry(
        title="rwasync provider API",
        version="1",
        description=(
            "Push assets and prices, read them back, validate, manage feeds (provider "
            "credentials); read the portal catalogue and its change feed (reader tokens); "
            "see docs/api.md."
        ),
        security_schemes=SECURITY_SCHEMES,
    )


def create_app(settings: IngestSettings) -> web.Application:
    db = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        require_schema=True,
    )
    broker = Broker(settings.amqp_url, publish_timeout=settings.publish_timeout, name="ingest-api")
    # One count of failed authentications per client, whichever kind of credential it tried.
    failures = FailedAuthentications(
        settings.auth_failures_per_minute, ClientAddresses(settings.trusted_proxies)
    )
    authenticator = Authenticator(
        ProviderCredentials(db),
        cache_seconds=settings.auth_cache_seconds,
        failures=failures,
        misdirected=provider_token_hint,
    )
    readers = Authenticator(
        ReaderTokens(db),
        cache_seconds=settings.auth_cache_seconds,
        schemes=BEARER_ONLY,
        failures=failures,
        misdirected=reader_token_hint,
    )
    feed_rules = FeedRules(
        policy=AddressPolicy.from_setting(settings.feed_allowed_networks),
        secrets=FeedSecrets(settings.feed_secrets_key.get_secret_value()),
    )
    idempotency = IdempotencyKeys(
        db,
        wait_seconds=settings.idempotency_wait_seconds,
        retention=timedelta(hours=settings.idempotency_retention_hours),
    )
    ingest = Ingest(
        db=db,
        callers=Callers(
            authenticator,
            ProviderRates(db, Rate(settings.rate_per_second, settings.rate_burst)),
            bodies=ByteBudget(settings.body_bytes_at_once),
        ),
        publisher=EventPublisher(
            broker,
            db,
            PublishingLimits(
                events_per_message=settings.events_per_message,
                price_events_per_message=settings.price_events_per_message,
                coalesce_max_events=settings.coalesce_max_events,
                publishers=settings.publishers,
            ),
        ),
        clock=AcceptanceClock(),
        idempotency=idempotency,
        single=BodyLimits(settings.max_body_bytes, settings.body_timeout),
        batch=BodyLimits(settings.max_batch_body_bytes, settings.body_timeout, budgeted=True),
    )
    api = provider_api()
    for handlers in (
        AssetWrites(ingest),
        AssetReads(ingest),
        Batches(ingest),
        Prices(ingest),
        Validation(ingest),
        FeedRoutes(ingest, feed_rules),
        FeedValidation(ingest, feed_rules, _preview_limits(settings)),
        CatalogReads(db, readers),
    ):
        api.add(handlers.operations())

    app = new_app(client_max_size=settings.max_batch_body_bytes)
    app.middlewares.append(_giving_back_bodies(ingest.callers))
    add_health_routes(app, [database_check(db), broker_check(broker)])
    app.add_routes(api.routes())
    api.serve_docs(app)
    # A feed preview spools to the system's temporary directory, as the poller does by default.
    app.cleanup_ctx.append(connections_context(db, broker, on_start=[sweep_leftover_spool]))
    if _shares_port(settings) and settings.shared_port_ready_wait > 0:
        app.cleanup_ctx.append(_connected_first(db, broker, settings.shared_port_ready_wait))
    receipt_retention = timedelta(hours=settings.receipt_retention_hours)
    app.cleanup_ctx.append(_pruning(idempotency, db, receipt_retention))
    return app


def _giving_back_bodies(callers: Callers) -> Middleware:
    """The body budget a request took (`Callers.write`) is returned once its answer is made."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            callers.give_back(request)

    return middleware


def _preview_limits(settings: IngestSettings) -> PreviewLimits:
    """A preview fetches as a run does (`FetchLimits`' defaults are the run's), but within the
    request: its own tries and total time."""
    return PreviewLimits(
        fetch=FetchLimits(
            total_timeout=settings.feed_preview_timeout,
            tries=settings.feed_preview_tries,
            retry_delay=1.0,
            max_compressed_bytes=settings.feed_preview_max_body_bytes,
            max_decoded_bytes=settings.feed_preview_max_decoded_bytes,
        ),
        max_items=settings.feed_preview_max_items,
        max_item_bytes=settings.max_body_bytes,
        at_once=settings.feed_previews_at_once,
    )


def _pruning(
    idempotency: IdempotencyKeys, db: Database, receipt_retention: timedelta
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(idempotency.prune_forever(), name="idempotency-prune")]
        if receipt_retention:
            tasks.append(
                asyncio.create_task(
                    prune_receipts_forever(db, receipt_retention), name="receipts-prune"
                )
            )
        yield
        for task in tasks:
            task.cancel()

    return context


def _shares_port(settings: IngestSettings) -> bool:
    return settings.reuse_port or settings.processes > 1


def _connected_first(
    db: Database, broker: Broker, wait: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """For a process sharing the port: aiohttp starts listening only after the app's start-up,
    so waiting here for Postgres and RabbitMQ (up to `wait` seconds) keeps the kernel from
    handing it connections it would refuse with 503 while the others serve them."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(wait):
                await db.wait_connected()
                await broker.wait_ready()
        except TimeoutError:
            log.warning(
                "listening before the database and broker answer",
                database=db.is_connected(),
                broker=broker.is_ready(),
                waited_seconds=wait,
            )
        yield

    return context


def serve(settings: IngestSettings) -> None:
    configure_logging("ingest-api", settings.log_level, settings.log_format)
    run(create_app(settings), settings, reuse_port=_shares_port(settings))


def serve_from_environment() -> None:
    """One of several processes sharing the port (`processes.supervise`'s workers)."""
    serve(load_settings(IngestSettings))


def main() -> None:
    settings = load_settings(IngestSettings)
    if settings.processes == 1:
        serve(settings)
        return
    configure_logging("ingest-api", settings.log_level, settings.log_format)
    raise SystemExit(supervise(serve_from_environment, settings.processes))
