"""What the feed poller's integration tests share: a provider's feed server on 127.0.0.1, the
poller served in-process, and ways to read runs and the messages it published."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aio_pika
import orjson
from aiohttp import web

from rwasync.feed_poller.app import POLLER_KEY, create_app
from rwasync.feed_poller.poller import FeedPoller
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feeds.auth import FeedSecrets
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.events import EventMessage
from rwasync.schema.feeds import FINISHED_STATUSES
from rwasync.schema.messages import decode_message
from rwasync.schema.timestamps import timestamp_text
from rwasync.store import feed_settings, feeds

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPERATOR_POLICY = AddressPolicy.from_setting("127.0.0.0/8")
NO_SECRETS = FeedSecrets("")


def asset(asset_id: str, updated_at: str = "2025-05-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": asset_id, "updated_at": updated_at, "status": "active", "name": asset_id, **extra}


def feed_body(assets: list[Any], *, timestamp: datetime | str, total: int | None = None) -> bytes:
    moment = timestamp if isinstance(timestamp, str) else timestamp_text(timestamp)
    return orjson.dumps(
        {
            "timestamp": moment,
            "total_assets": len(assets) if total is None else total,
            "assets": assets,
        }
    )


class FeedServer:
    """A provider's web server: each path answers its queued handlers in turn, the last for ever."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self.hits: defaultdict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, *handlers: Handler) -> str:
        self._handlers[path] = list(handlers)
        return self.url(path)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        queue = self._handlers.get(path)
        if not queue:
            return web.Response(status=404, text="no such feed")
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return await handler(request)


def body(
    content: bytes,
    status: int = 200,
    *,
    delay: float = 0.0,
    headers: dict[str, str] | None = None,
    seen: list[web.Request] | None = None,
) -> Handler:
    """A fixed answer; `seen` collects the requests (to check what the poller sent)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append(request)
        await asyncio.sleep(delay)
        return web.Response(body=content, status=status, headers=headers or {})

    return handler


def status(code: int) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=f"status {code}")

    return handler


def redirect(location: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return handler


def chunked(chunk: bytes, count: int) -> Handler:
    """A body streamed without Content-Length, so only the running byte count can catch it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(count):
            await response.write(chunk)
        await response.write_eof()
        return response

    return handler


def poller_settings(database_url: str, amqp_url: str, **overrides: Any) -> FeedPollerSettings:
    """Settings for a test poller: quick polling, quick retries, no environment involved."""
    values: dict[str, Any] = {
        "RWASYNC_DATABASE_URL": database_url,
        "RWASYNC_AMQP_URL": amqp_url,
        "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8",
        "port": 0,
        "poll_interval": 0.2,
        "retry_delay": 0.1,
        "connect_timeout": 5,
        "min_rate_seconds": 5,
        "total_timeout": 20,
    }
    values.update(overrides)
    return FeedPollerSettings.model_validate(values)


@contextlib.asynccontextmanager
async def running_poller(settings: FeedPollerSettings) -> AsyncIterator[tuple[FeedPoller, str]]:
    """The feed poller app served on a random port; yields it and its base URL once ready."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    poller = app[POLLER_KEY]
    try:
        deadline = time.monotonic() + 30
        while not poller.is_listening or not poller_ready(poller):
            if time.monotonic() > deadline:
                raise AssertionError("the feed poller did not become ready in 30 s")
            await asyncio.sleep(0.05)
        yield poller, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def poller_ready(poller: FeedPoller) -> bool:
    return poller.is_running() and poller._broker.is_ready()


async def add_feed(
    db: Database,
    provider_id: str,
    url: str,
    *,
    schedule: str | None = None,
    fmt: str = "json",
    secrets: FeedSecrets = NO_SECRETS,
    **document: Any,
) -> str:
    """Register a feed as the CLI does (same rules as a provider's PUT)."""
    settings = feed_settings.parse_feed_settings(
        {"url": url, "format": fmt, "schedule": schedule, **document}, OPERATOR_POLICY
    )
    async with db.connection() as conn:
        feed = await feeds.add_feed(
            conn, provider_id=provider_id, settings=settings, secrets=secrets
        )
    return str(feed["feed_id"])


async def trigger(db: Database, feed_id: str) -> str:
    async with db.connection() as conn:
        return await feeds.request_run(conn, feed_id)


async def run_row(db: Database, run_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM feed_runs WHERE run_id = $1", run_id)


async def wait_for_run(db: Database, run_id: str, timeout: float = 20) -> Any:
    """The run once finished (an approved held run: once its approval is applied)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await run_row(db, run_id)
        if row["status"] in FINISHED_STATUSES and row["decision"] is None:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {row['status']} after {timeout} s")
        await asyncio.sleep(0.05)


async def store_asset(
    db: Database,
    provider_id: str,
    asset_id: str,
    *,
    updated_at: datetime,
    accepted_at: datetime | None = None,
    source: str = "feed",
    deleted: bool = False,
) -> None:
    """Put an asset into the reconciler's table as if it had applied it earlier."""
    document = None if deleted else {"id": asset_id}
    await db.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at)
           VALUES ($1, $2, $3, $4, $5, gen_random_uuid(), $6, $7, $8, $9, now())""",
        provider_id,
        asset_id,
        updated_at,
        deleted,
        accepted_at or updated_at,
        source,
        document,
        None if deleted else b"\x00" * 32,
        None if deleted else "active",
    )


class Published:
    """Reads what the poller published onto the reconciler's queue."""

    def __init__(self, amqp_url: str, queue: str = topology.RECONCILER_QUEUE) -> None:
        self._url = amqp_url
        self._queue = queue
        self.sizes: list[int] = []  # of every message read, in bytes

    async def messages(self, *, expect_events: int, timeout: float = 10) -> list[EventMessage]:
        """Every message on the queue until `expect_events` events arrived (then a short wait
        to catch extra ones)."""
        connection = await aio_pika.connect(self._url)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(self._queue)
            found: list[EventMessage] = []
            deadline = time.monotonic() + timeout
            settle_until: float | None = None
            while True:
                message = await queue.get(no_ack=True, fail=False)
                if message is not None:
                    assert message.routing_key in (
                        topology.ASSET_BATCH_KEY,
                        topology.PRICE_BATCH_KEY,
                    )
                    found.append(decode_message(message.body))
                    self.sizes.append(len(message.body))
                    continue
                now = time.monotonic()
                events = sum(len(m.events) for m in found)
                if events >= expect_events:
                    settle_until = settle_until or now + 0.3
                    if now > settle_until:
                        return found
                elif now > deadline:
                    raise AssertionError(f"{events} events published, expected {expect_events}")
                await asyncio.sleep(0.05)
        finally:
            await connection.close()
