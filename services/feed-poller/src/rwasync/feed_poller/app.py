"""Wiring of the feed poller: connections, the run loop, health and metrics."""

from __future__ import annotations

from aiohttp import web

from rwasync.feed_poller.poller import FeedPoller
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feeds.spool import sweep_leftover_spool
from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.platform.http import add_health_routes, new_app, run
from rwasync.platform.logging import configure_logging
from rwasync.platform.service import broker_check, connections_context, database_check
from rwasync.platform.settings import load_settings

POLLER_KEY = web.AppKey("feed_poller", FeedPoller)


def create_app(settings: FeedPollerSettings) -> web.Application:
    db = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        require_schema=True,
    )
    # Runs wait for confirms at the broker's pace, watching for a stall (see `publishing`).
    broker = Broker(settings.amqp_url, publish_timeout=None, name="feed-poller")
    poller = FeedPoller(settings, db, broker)

    async def polling() -> tuple[str, bool]:
        return "poller", poller.is_running()

    app = new_app()
    app[POLLER_KEY] = poller
    add_health_routes(app, [database_check(db), broker_check(broker), polling])
    app.cleanup_ctx.append(
        connections_context(
            db,
            broker,
            on_start=[lambda: sweep_leftover_spool(settings.spool_dir or None), poller.start],
            on_stop=[poller.stop],
        )
    )
    return app


def main() -> None:
    settings = load_settings(FeedPollerSettings)
    configure_logging("feed-poller", settings.log_level, settings.log_format)
    run(create_app(settings), settings)
