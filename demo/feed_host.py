"""The demo provider's feed, as a provider would host it: `GET /feed.json` answers the JSON
envelope of the whole catalogue, generated now. Every few generations one asset's rent changes,
so scheduled feed runs show an update among the unchanged assets."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

import orjson
import structlog
from aiohttp import web

from demo.catalogue import change_rent, feed_envelope
from demo.state import DemoState, StateStore
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

EVOLVE_EVERY: Final = 3


class FeedHost:
    def __init__(
        self,
        state: DemoState,
        store: StateStore,
        rng: random.Random,
        on_served: Callable[[], None] = lambda: None,
    ) -> None:
        self.state = state
        self.store = store
        self.rng = rng
        self.on_served = on_served

    def _evolve(self) -> None:
        candidates = self.state.active_ids()
        if not candidates:
            return
        asset_id = self.rng.choice(candidates)
        change = change_rent(self.state.asset(asset_id), utc_now(), self.rng)
        self.state.replace_asset(change.document)
        log.info(
            "feed catalogue changed: this feed carries a rent review",
            asset_id=asset_id,
            change=change.summary,
        )

    async def serve_feed(self, request: web.Request) -> web.Response:
        self.state.feed_generations += 1
        if self.state.feed_generations % EVOLVE_EVERY == 0:
            self._evolve()
        self.store.save(self.state)
        envelope = feed_envelope(self.state.assets, utc_now())
        log.info(
            "feed served",
            assets=envelope["total_assets"],
            feed_timestamp=envelope["timestamp"],
            client=request.remote,
        )
        self.on_served()
        return web.Response(body=orjson.dumps(envelope), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feed.json", self.serve_feed)
        return app


async def start_feed_host(host: FeedHost, port: int) -> web.AppRunner:
    """Listen on 127.0.0.1 only: the feed is for the local feed-poller, nobody else."""
    runner = web.AppRunner(host.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
