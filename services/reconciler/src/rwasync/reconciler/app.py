"""Wiring of the reconciler: consume the asset queue and apply; relay the change feed; keep dead
letters; serve health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from aiohttp import web

from rwasync.platform.http import run, tune_garbage_collector
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import consuming_service
from rwasync.platform.settings import load_settings
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.dead_letters import DeadLetterKeeper
from rwasync.reconciler.relay import ChangeRelay
from rwasync.reconciler.settings import ReconcilerSettings
from rwasync.schema import topology
from rwasync.schema.raw_events import ASSET_QUEUE_DECODER


def create_app(settings: ReconcilerSettings) -> web.Application:
    service = consuming_service(
        settings,
        name="reconciler",
        queue=topology.RECONCILER_QUEUE,
        applier=lambda db: AssetApplier(db, shares=settings.apply_shares),
        decoder=ASSET_QUEUE_DECODER,  # documents stay raw JSON text
        # Every replica's applies take the same stripes (`AssetApplier`).
        applies_shared=True,
    )
    relay = ChangeRelay(
        settings.database_url,
        service.broker,
        interval=settings.relay_interval,
        page_size=settings.relay_page_size,
        per_message=settings.relay_changes_per_message,
        retention=timedelta(days=settings.change_retention_days),
    )
    keeper = DeadLetterKeeper(service.db, service.broker)
    # Started after the connections and stopped before them (cleanup contexts unwind in reverse).
    service.app.cleanup_ctx.append(_background(relay, keeper))
    return service.app


def _background(
    relay: ChangeRelay, keeper: DeadLetterKeeper
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_: web.Application) -> AsyncIterator[None]:
        relay.start()
        keeper.start()
        yield
        await keeper.stop()
        await relay.stop()

    return context


def main() -> None:
    settings = load_settings(ReconcilerSettings)
    configure_logging("reconciler", settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_garbage_collector()
    run(app, settings)
