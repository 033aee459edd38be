"""Wiring of ingest-api: connections opened in the background, the provider API's operations
(assets, prices, validation, feeds) and the portal's catalogue reads registered (and described at
`/v1/openapi.json`, browsable at `/docs`), health and metrics;
`main()` serves it until SIGTERM, in one process or several sharing the port."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from types import FrameType
from typing import Final

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

# With RWASYNC_INGEST_PROCESSES > 1: how often a worker checks that its supervisor still lives;
# the window in which a worker ending means the service cannot start; and the pause before a
# worker that ended is replaced, doubling (up to the maximum) while replacements keep ending
# within the steady time.
PARENT_CHECK_SECONDS: Final = 1.0
WORKER_START_SECONDS: Final = 10.0
WORKER_STEADY_SECONDS: Final = 60.0
WORKER_RESTART_DELAY: Final = 1.0
WORKER_RESTART_DELAY_MAX: Final = 30.0


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


def _serve_from_environment(parent_pid: int) -> None:
    """A worker of `main`'s supervisor. It stops (gracefully, as on SIGTERM) once its parent is
    gone: a supervisor killed outright left its workers serving the port, re-parented, beside
    the ones of the next supervisor started (an operator's trial)."""
    threading.Thread(
        target=_stop_without, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()
    serve(load_settings(IngestSettings))


def _stop_without(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    settings = load_settings(IngestSettings)
    if settings.processes == 1:
        serve(settings)
        return
    configure_logging("ingest-api", settings.log_level, settings.log_format)
    raise SystemExit(_supervise(settings.processes))


def _supervise(processes: int) -> int:
    """Several processes bind the port with SO_REUSEPORT and the kernel spreads connections
    among them; this one starts them, passes SIGTERM/SIGINT on, and starts another in place of
    one that ends by itself (it did not: the service went on at half its processes, silently,
    an operator's trial). One that exits with an error within `WORKER_START_SECONDS` of the first
    start (the port taken, say) ends them all, with its exit status: no later one would fare
    better. One killed by a signal is replaced whenever it ends."""
    spawn = multiprocessing.get_context("spawn")
    parent_pid = os.getpid()
    stopping = False

    def start(n: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        worker = spawn.Process(
            target=_serve_from_environment, args=(parent_pid,), name=f"ingest-api-{n}"
        )
        worker.start()
        return worker, time.monotonic()

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker, _started in workers.values():
            if worker.pid is not None and worker.is_alive():
                worker.terminate()

    began = time.monotonic()
    workers = {n: start(n) for n in range(processes)}
    delay = WORKER_RESTART_DELAY
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        multiprocessing.connection.wait([w.sentinel for w, _ in workers.values()], timeout=1.0)
        for n, (worker, started) in list(workers.items()):
            if stopping or worker.is_alive():
                continue
            code = worker.exitcode
            if code is not None and code > 0 and time.monotonic() - began < WORKER_START_SECONDS:
                log.error("an ingest-api process failed to start; stopping", exit_status=code)
                stop(signal.SIGTERM, None)
                for other, _started in workers.values():
                    other.join()
                return code or 1
            if time.monotonic() - started > WORKER_STEADY_SECONDS:
                delay = WORKER_RESTART_DELAY
            log.error(
                "an ingest-api process ended; starting another",
                process=worker.name,
                exit_status=code,
                after=delay,
            )
            pause_until = time.monotonic() + delay
            while not stopping and time.monotonic() < pause_until:  # SIGTERM ends the pause
                time.sleep(0.1)
            delay = min(delay * 2, WORKER_RESTART_DELAY_MAX)
            if not stopping:
                workers[n] = start(n)
    for worker, _started in workers.values():
        worker.join()
    return 0
