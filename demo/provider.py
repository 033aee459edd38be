"""The demo provider that `make run` starts: `python -m demo.provider` from the repository root.

It hosts a feed of a dozen generated rental properties on 127.0.0.1:8090 (`DEMO_FEED_PORT`),
waits for ingest-api and pricing, makes (or reuses, from `.run/demo.json`) a provider, a reader
and a feed with the operator CLI, runs the feed once, and then keeps pushing price ticks and
asset changes while reading back what an investor sees. SIGINT or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Final

import aiohttp
import structlog

from demo.catalogue import CatalogueInvalid, generate_catalogue, validate_catalogue
from demo.feed_host import FeedHost, start_feed_host
from demo.identity import DemoFailed, describe_run, ensure_identity, latest_run, trigger_feed
from demo.pusher import Pusher
from demo.settings import DemoSettings
from demo.state import DemoState, StateStore
from rwasync.platform.logging import configure_logging
from rwasync.platform.settings import load_settings
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

# How long after serving the feed to look up the poller's run, which by then has finished.
RUN_REPORT_DELAY: Final = 15.0
UNFINISHED: Final = ("queued", "running")


async def wait_until_ready(
    session: aiohttp.ClientSession, name: str, base_url: str, deadline: float, timeout: float
) -> None:
    """Poll `/readyz` once a second; DemoFailed with the last answer once `deadline` (monotonic
    clock) has passed, `timeout` seconds after the demo began waiting."""
    url = f"{base_url}/readyz"
    next_note = time.monotonic() + 15
    last = "no answer yet"
    while True:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    log.info(f"{name} is ready", url=url)
                    return
                last = f"HTTP {response.status}: {(await response.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = str(exc) or type(exc).__name__
        now = time.monotonic()
        if now > deadline:
            raise DemoFailed(
                f"{name} was not ready at {url} within {timeout:.0f} s (last: {last}); "
                f"see the {name} log lines above"
            )
        if now > next_note:
            log.info(f"still waiting for {name}", url=url, last=last)
            next_note = now + 15
        await asyncio.sleep(1)


async def report_feed_runs(feed_id: str, served: asyncio.Event, reported: set[str | None]) -> None:
    """After the poller fetched the feed, tell what its run did (created, updated, unchanged)."""
    while True:
        await served.wait()
        served.clear()
        await asyncio.sleep(RUN_REPORT_DELAY)
        run = await latest_run(feed_id)
        if run is None or run.get("run_id") in reported or run.get("status") in UNFINISHED:
            continue
        reported.add(run.get("run_id"))
        log.info(f"feed run {describe_run(run)}", feed_id=feed_id, run_id=run.get("run_id"))


def load_state(store: StateStore) -> DemoState:
    state = store.load()
    if state is None:
        state = DemoState(assets=generate_catalogue(utc_now()))
        log.info("generated the demo catalogue", assets=len(state.assets), path=str(store.path))
    try:
        validate_catalogue(state.assets)
    except CatalogueInvalid as exc:
        raise DemoFailed(f"the demo catalogue does not pass the asset schema: {exc}") from exc
    store.save(state)
    return state


async def run_demo(settings: DemoSettings) -> None:
    store = StateStore(settings.state_path)
    state = load_state(store)
    rng = random.Random()
    served = asyncio.Event()
    host = FeedHost(state, store, rng, on_served=served.set)
    try:
        runner = await start_feed_host(host, settings.feed_port)
    except OSError as exc:
        raise DemoFailed(
            f"cannot host the feed on 127.0.0.1:{settings.feed_port} ({exc}); is another demo "
            "running? Set DEMO_FEED_PORT to use another port"
        ) from exc
    log.info("hosting the demo feed", url=settings.feed_url, assets=len(state.assets))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            services = (("ingest-api", settings.ingest_url), ("pricing", settings.pricing_url))
            deadline = time.monotonic() + settings.ready_timeout
            for name, url in services:
                await wait_until_ready(session, name, url, deadline, settings.ready_timeout)
            if await ensure_identity(state, settings.feed_url):
                store.save(state)
            assert state.feed is not None
            feed_id = state.feed.feed_id
            first_run = await trigger_feed(feed_id)
            reported: set[str | None] = {first_run}
            pusher = Pusher(session, settings, state, store, rng)
            log.info(
                "watch the prices move live (paste a reader token, e.g. the demo's in"
                f" {settings.state_path}): {settings.pricing_url}/demo/prices.html"
                f"#provider_id={state.provider.provider_id if state.provider else ''}"
            )
            log.info(
                f"pushing price ticks every {settings.tick_seconds:.0f} s and an asset change"
                f" every {3 * settings.tick_seconds:.0f} s; Ctrl-C stops everything"
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(pusher.run())
                tasks.create_task(report_feed_runs(feed_id, served, reported))
    finally:
        await runner.cleanup()


async def run_until_signalled(settings: DemoSettings) -> None:
    """Run the demo until it fails or SIGINT/SIGTERM arrives; then cancel it and clean up."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    work = asyncio.create_task(run_demo(settings))
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if work.done():
        work.result()  # the demo ended by itself: only a failure does that; raise it
        return
    log.info("stopping the demo provider")
    work.cancel()
    # Cancellation is what we asked for; anything else the demo raised while stopping propagates.
    with contextlib.suppress(asyncio.CancelledError):
        await work
    log.info("demo provider stopped")


def main() -> None:
    settings = load_settings(DemoSettings)
    configure_logging("demo", settings.log_level, settings.log_format)
    try:
        asyncio.run(run_until_signalled(settings))
    except DemoFailed as exc:
        log.error(f"demo provider cannot go on: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
