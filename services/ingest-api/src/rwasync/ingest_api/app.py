"""Wiring of ingest-api: connections opened in the background, the provider API, health and
metrics routes; `main()` serves it until SIGTERM."""

from __future__ import annotations

from aiohttp import web

from rwasync.ingest_api.acceptance import AcceptanceClock, EventPublisher
from rwasync.ingest_api.handlers import ProviderApi
from rwasync.ingest_api.settings import IngestSettings
from rwasync.platform.auth import Authenticator
from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.platform.http import add_health_routes, new_app, run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import broker_check, connections_context, database_check
from rwasync.store.tenants import ProviderCredentials


def create_app(settings: IngestSettings) -> web.Application:
    db = Database(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    broker = Broker(settings.amqp_url, publish_timeout=settings.publish_timeout, name="ingest-api")
    api = ProviderApi(
        db=db,
        authenticator=Authenticator(
            ProviderCredentials(db), cache_seconds=settings.auth_cache_seconds
        ),
        publisher=EventPublisher(broker, db),
        clock=AcceptanceClock(),
        max_body_bytes=settings.max_body_bytes,
    )
    app = new_app(client_max_size=settings.max_body_bytes)
    add_health_routes(app, [database_check(db), broker_check(broker)])
    app.add_routes(api.routes())
    app.cleanup_ctx.append(connections_context(db, broker))
    return app


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest-api", settings.log_level, settings.log_format)
    run(create_app(settings), settings.host, settings.port)
