"""The process's one source of price changes for its stream subscribers.

One broker subscription per process: an exclusive, auto-delete queue bound to the
`rwasync.prices.changed` fanout exchange, on which every pricing replica publishes a wake-up after
a commit that moved a latest price. On a wake-up (or every `stream_poll_seconds` without one) the
hub reads the change log after its position — only changes every reader can already see in the
same order (below `writers_horizon`) — renders each watched change once as its SSE event, and
appends each provider's changes to its subscribers' bounded backlogs in memory, a slice at a time
with one wake-up per subscriber. It never waits for a subscriber: one whose backlog overflows is
marked slow and dropped by its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import aio_pika
import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from prometheus_client import Counter, Gauge

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database, LockSpace, writers_horizon
from rwasync.platform.retry import retrying
from rwasync.platform.tasks import cancel_and_wait
from rwasync.pricing import queries
from rwasync.pricing.api import row_price
from rwasync.schema import topology

log = structlog.get_logger(__name__)

# (transaction id, change id): the order in which every replica hands out changes.
Position = tuple[int, int]
FIRST_POSITION: Final[Position] = (0, 0)
_MAX_BIGINT: Final = 2**63 - 1
PAGE: Final = 1000
# While changes wait for an older transaction to end, look again this soon.
PENDING_RECHECK: Final = 0.02
# The hub lets subscribers' connections write after offering this many changes, so a burst
# fills no backlog of a subscriber that keeps up (backlogs hold at least twice as many).
OFFER_SLICE: Final = 64

SUBSCRIBERS = Gauge("rwasync_price_stream_subscribers", "Open price stream subscriptions")
CHANGES_SENT = Counter("rwasync_price_stream_changes_total", "Price changes the hub has read")
SLOW_DROPPED = Counter("rwasync_price_stream_slow_total", "Subscribers dropped as too slow")


# The form of every id the stream sends (`{xid}-{change_id}`): a change's xid is a transaction's
# (3 and up) and its change_id comes from an identity starting at 1, so neither part is 0 or has
# a leading zero. `0-0` in particular is the trim point's "nothing trimmed yet", which `_expired`
# would take as a resume point right after the last change removed. The OpenAPI document states
# the same pattern.
EVENT_ID_PATTERN: Final = "[1-9][0-9]{0,17}-[1-9][0-9]{0,17}"
_EVENT_ID: Final = re.compile(EVENT_ID_PATTERN)


def parse_event_id(text: str) -> Position:
    """The position of an id this API sent; ValueError otherwise."""
    event_id = text.strip()
    if not _EVENT_ID.fullmatch(event_id):
        raise ValueError(f"{text[:80]!r} is not an event id of this stream")
    xid, _, change = event_id.partition("-")
    return int(xid), int(change)


@dataclass(frozen=True, slots=True)
class PriceChange:
    """One change, rendered once as its whole SSE event (`frame`): every subscriber is sent
    these same bytes, so 50 subscribers cost one JSON encoding, not fifty."""

    position: Position
    provider_id: str
    asset_id: str
    frame: bytes

    @classmethod
    def from_row(cls, row: asyncpg.Record, now: datetime) -> PriceChange:
        position = (row["xid"], row["change_id"])
        return cls(
            position,
            row["provider_id"],
            row["asset_id"],
            sse_frame(position, orjson.dumps(row_price(row, now))),
        )


def sse_frame(position: Position, data: bytes) -> bytes:
    return b"id: %d-%d\nevent: price\ndata: %s\n\n" % (position[0], position[1], data)


@dataclass(eq=False)
class Subscriber:
    """One stream connection's filter and its bounded backlog of changes to send.

    The hub appends whole slices of changes (`offer`) and sets `ready` once per slice; the
    connection takes the whole backlog at once (`take`) and writes it in one call. A backlog over
    `capacity` marks the subscriber slow: it is dropped by its own connection, and the hub never
    waits for it."""

    provider_id: str
    asset_ids: frozenset[str] | None
    capacity: int
    backlog: list[PriceChange] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    slow: asyncio.Event = field(default_factory=asyncio.Event)
    # The service is stopping: the connection says so and ends (the client resumes elsewhere).
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, changes: Sequence[PriceChange]) -> None:
        """Queue the matching ones of these changes of the subscriber's provider, in order."""
        if self.slow.is_set():
            return
        if self.asset_ids is not None:
            wanted = self.asset_ids
            changes = [c for c in changes if c.asset_id in wanted]
            if not changes:
                return
        if len(self.backlog) + len(changes) > self.capacity:
            SLOW_DROPPED.inc()
            self.backlog.clear()
            self.slow.set()
            self.ready.set()
            return
        self.backlog.extend(changes)
        self.ready.set()

    def take(self) -> list[PriceChange]:
        """Everything queued so far (and `ready` cleared): the next write."""
        taken, self.backlog = self.backlog, []
        self.ready.clear()
        return taken

    async def wait(self) -> None:
        await self.ready.wait()


class HubUnavailable(Exception):
    """The hub has no live broker subscription or database yet."""


class ChangeHub:
    def __init__(self, db: Database, broker: Broker, *, poll_seconds: float) -> None:
        self._db = db
        self._broker = broker
        self._poll_seconds = poll_seconds
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._position: Position | None = None
        self._live = asyncio.Event()
        self._wake = asyncio.Event()
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._wakeup_due = False
        self._queue_name = (
            f"rwasync.pricing.changes.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="price-change-hub")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 2)

    def is_live(self) -> bool:
        running = self._task is not None and not self._task.done()
        return running and self._live.is_set() and self._broker.is_ready()

    def changed(self) -> None:
        """A commit here moved latest prices: look now, and wake every other replica."""
        self._wake.set()
        self._wakeup_due = True
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_wakeups())

    async def _publish_wakeups(self) -> None:
        """One publish after every `changed()`, however many come while one is on its way."""
        while self._wakeup_due:
            self._wakeup_due = False
            if self._exchange is None or not self._broker.is_ready():
                return  # the others look every poll interval anyway
            try:
                await self._exchange.publish(
                    aio_pika.Message(b"", delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT), ""
                )
            except Exception as exc:
                log.warning("price change wake-up not published", error=repr(exc))

    async def subscribe(
        self, provider_id: str, asset_ids: Sequence[str] | None, capacity: int, timeout: float
    ) -> tuple[Subscriber, Position]:
        """Register a subscriber; it gets every matching change after the returned position."""
        try:
            await asyncio.wait_for(self._live.wait(), timeout)
        except TimeoutError:
            raise HubUnavailable("the price stream is not connected yet") from None
        if not self._broker.is_ready() or self._position is None:
            raise HubUnavailable("the price stream has lost its broker connection")
        subscriber = Subscriber(
            provider_id, frozenset(asset_ids) if asset_ids is not None else None, capacity
        )
        self._subscribers.setdefault(provider_id, set()).add(subscriber)
        SUBSCRIBERS.inc()
        return subscriber, self._position

    def close_subscribers(self) -> None:
        """Tell every open stream to end now (the service is stopping): each connection sends
        `event: close` and returns, instead of holding the shutdown until its timeout."""
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.closing.set()
                subscriber.ready.set()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = self._subscribers.get(subscriber.provider_id)
        if group is not None and subscriber in group:
            group.discard(subscriber)
            SUBSCRIBERS.dec()
            if not group:
                del self._subscribers[subscriber.provider_id]

    async def _run(self) -> None:
        # A broker reconnecting or a database blip while the hub starts is tried again, never
        # the end of the stream on this replica (the robust connection restores the channel
        # and its consumer once the hub is live).
        async for attempt in retrying("starting the price stream"):
            with attempt:
                await self._start()
        log.info("price stream live", queue=self._queue_name)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                pending = await self._deliver()
            except Exception as exc:  # the database is away: subscribers wait, keep-alives go on
                log.warning("price changes not read; retrying", error=repr(exc))
                await asyncio.sleep(1)
                continue
            if pending:
                await asyncio.sleep(PENDING_RECHECK)
                self._wake.set()

    async def _start(self) -> None:
        await self._broker.wait_ready()
        await self._db.wait_connected()
        channel = await self._broker.connection.channel()
        try:
            exchange = await channel.declare_exchange(
                topology.PRICE_CHANGES_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(self._queue_name, exclusive=True, auto_delete=True)
            await queue.bind(exchange)
            await queue.consume(self._on_wakeup, no_ack=True)
            # Bound before reading the position: every commit after it wakes this hub.
            horizon = await self._start_position()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 2)
            raise
        self._channel, self._exchange = channel, exchange
        self._position = (horizon - 1, _MAX_BIGINT)
        self._live.set()

    async def _horizon(self) -> int:
        return await writers_horizon(self._db.pool, LockSpace.PRICES)

    async def _start_position(self) -> int:
        while True:
            try:
                return await self._horizon()
            except Exception as exc:
                log.warning("price stream cannot read its start position", error=repr(exc))
                await asyncio.sleep(1)

    async def _on_wakeup(self, _: AbstractIncomingMessage) -> None:
        self._wake.set()

    async def _deliver(self) -> bool:
        """Offer every visible change after the position; True if some still wait."""
        assert self._position is not None
        while True:
            horizon = await self._horizon()  # first: see writers_horizon
            rows = await self._db.fetch(queries.CHANGES_AFTER, *self._position, horizon, PAGE)
            now = datetime.now(UTC)
            changes = [r for r in rows if r["xid"] is not None]
            CHANGES_SENT.inc(len(changes))
            for start in range(0, len(changes), OFFER_SLICE):
                if start:
                    await asyncio.sleep(0)  # the subscribers' connections write this slice
                self._offer(changes[start : start + OFFER_SLICE], now)
            if len(changes) < PAGE:
                return bool(rows[0]["pending"])

    def _offer(self, rows: Sequence[asyncpg.Record], now: datetime) -> None:
        """Render each watched change once and hand each provider's changes to its subscribers
        in one call per subscriber."""
        by_provider: dict[str, list[PriceChange]] = {}
        for row in rows:
            self._position = (row["xid"], row["change_id"])
            if row["disabled"] or row["provider_id"] not in self._subscribers:
                continue
            by_provider.setdefault(row["provider_id"], []).append(PriceChange.from_row(row, now))
        for provider_id, changes in by_provider.items():
            for subscriber in tuple(self._subscribers.get(provider_id, ())):
                subscriber.offer(changes)
