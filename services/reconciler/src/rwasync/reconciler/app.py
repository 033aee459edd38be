"""Wiring of the reconciler: consume the asset queue, apply, serve health and metrics."""

from __future__ import annotations

from aiohttp import web

from rwasync.platform.http import run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import consuming_service
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.settings import ReconcilerSettings
from rwasync.schema import topology


def create_app(settings: ReconcilerSettings) -> web.Application:
    return consuming_service(
        settings,
        name="reconciler",
        queue=topology.RECONCILER_QUEUE,
        applier=AssetApplier,
        prefetch=settings.prefetch,
    ).app


def main() -> None:
    settings = ReconcilerSettings()
    configure_logging("reconciler", settings.log_level, settings.log_format)
    run(create_app(settings), settings.host, settings.port)
