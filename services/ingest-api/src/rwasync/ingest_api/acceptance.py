"""Accepting changes: the instants that order them, the events that carry them, and the one way
they leave this service — published with a broker confirm, then receipted as `accepted`.

A change counts as accepted when ingest-api answers 202, and its acceptance instant breaks ties
between versions with equal `updated_at` (docs/api.md, "Versions and ordering"); so instants must
be unique and increasing within the process, and a batch takes a run of consecutive ones in
request order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

import structlog
from prometheus_client import Counter

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database, is_transient
from rwasync.platform.http import service_unavailable
from rwasync.schema import events, topology
from rwasync.schema.asset import Asset, content_hash_hex, normalized_document
from rwasync.schema.events import (
    AnyEvent,
    Arrival,
    AssetUpserted,
    EventType,
    PriceUpdated,
    message_for,
)
from rwasync.schema.price import Price
from rwasync.schema.timestamps import utc_now
from rwasync.store import receipts

log = structlog.get_logger(__name__)

AcceptedEvent = AnyEvent

MICROSECOND: Final = timedelta(microseconds=1)
# The receipt is a courtesy for GET /v1/events (the consumer writes the decided one anyway), so
# a slow database must not hold a 202 whose event the broker has already confirmed.
RECEIPT_TIMEOUT: Final = 2.0
# Seconds a client is asked to wait before retrying after the broker could not confirm.
BROKER_RETRY_AFTER: Final = 2

EVENTS_ACCEPTED = Counter(
    "rwasync_ingest_events_accepted_total", "Events confirmed by the broker", ["type", "source"]
)
PUBLISH_FAILURES = Counter(
    "rwasync_ingest_publish_failures_total", "Publishes the broker did not confirm", ["exchange"]
)
RECEIPT_FAILURES = Counter(
    "rwasync_ingest_receipt_failures_total",
    "Accepted receipts not recorded (the event was published; its consumer records the decision)",
)


class AcceptanceClock:
    """Strictly increasing microsecond instants within this process: max(now, last + 1 µs)."""

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self._now = now
        self._last: datetime | None = None

    def instants(self, count: int) -> list[datetime]:
        """`count` consecutive instants, all later than any handed out before."""
        if count < 1:
            raise ValueError("count must be at least 1")
        first = self._now()
        if self._last is not None and first <= self._last:
            first = self._last + MICROSECOND
        self._last = first + (count - 1) * MICROSECOND
        return [first + i * MICROSECOND for i in range(count)]

    def next(self) -> datetime:
        return self.instants(1)[0]


def asset_upserted(asset: Asset, arrival: Arrival, accepted_at: datetime) -> AssetUpserted:
    document = normalized_document(asset)
    return events.asset_upserted(
        arrival,
        asset_id=asset.id,
        updated_at=asset.updated_at,
        accepted_at=accepted_at,
        document=document,
        content_hash=content_hash_hex(document),
    )


def price_updated(
    asset_id: str, price: Price, arrival: Arrival, accepted_at: datetime
) -> PriceUpdated:
    return events.price_updated(
        arrival,
        asset_id=asset_id,
        amount=price.amount,
        currency=price.currency,
        as_of=price.as_of,
        accepted_at=accepted_at,
    )


def _route(events: Sequence[AcceptedEvent]) -> tuple[str, str]:
    """(exchange, routing key): a single event goes by its type, several by the batch key."""
    prices = [e.type == EventType.PRICE_UPDATED for e in events]
    if any(prices) and not all(prices):
        raise ValueError("asset and price events travel on different exchanges")
    if all(prices):
        key = str(events[0].type) if len(events) == 1 else topology.PRICE_BATCH_KEY
        return topology.PRICES_EXCHANGE, key
    key = str(events[0].type) if len(events) == 1 else topology.ASSET_BATCH_KEY
    return topology.ASSETS_EXCHANGE, key


class AcceptedReceipts:
    """Records `accepted` receipts with group commit: the receipts of requests that arrive while
    an insert is under way wait for the next one, so concurrent requests share one round trip
    instead of queueing for a pool connection each."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[tuple[Sequence[AcceptedEvent], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, events: Sequence[AcceptedEvent]) -> None:
        """Return once these events' receipts are committed; raise what the insert raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_while_waiting())
        await done

    async def _write_while_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await receipts.record_accepted(
                    self._db.pool, [event for events, _ in group for event in events]
                )
            except Exception as exc:  # handed to every waiter, which logs it with its context
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in group:
                    if not done.done():
                        done.set_result(None)


class EventPublisher:
    """Publishes accepted events as one confirmed message and records their `accepted` receipts."""

    def __init__(self, broker: Broker, db: Database) -> None:
        self._broker = broker
        self._receipts = AcceptedReceipts(db)

    async def accept(self, events: Sequence[AcceptedEvent]) -> None:
        """Return once the broker confirmed; raise a 503 Problem when it did not."""
        if not events:
            return
        exchange, routing_key = _route(events)
        try:
            await self._broker.publish(exchange, routing_key, message_for(list(events)))
        except BrokerUnavailable as exc:
            PUBLISH_FAILURES.labels(exchange).inc()
            log.warning(
                "publish not confirmed", exchange=exchange, events=len(events), error=str(exc)
            )
            raise service_unavailable(
                "the change could not be stored durably right now; retry shortly",
                retry_after=BROKER_RETRY_AFTER,
            ) from exc
        for event in events:
            EVENTS_ACCEPTED.labels(str(event.type), str(event.source)).inc()
        await self._record_receipts(events)

    async def _record_receipts(self, events: Sequence[AcceptedEvent]) -> None:
        # The events are durable in the broker: failing the request now would only make the
        # client send them again. Log, count, and answer 202.
        try:
            async with asyncio.timeout(RECEIPT_TIMEOUT):
                await self._receipts.record(events)
        except Exception as exc:
            RECEIPT_FAILURES.inc()
            first = events[0]
            context = {
                "events": len(events),
                "first_event_id": str(first.event_id),
                "first_asset_id": first.asset_id,
                "error": repr(exc),
            }
            if is_transient(exc):
                log.warning("accepted receipt not recorded: database unavailable", **context)
            else:
                log.error("accepted receipt not recorded", exc_info=True, **context)
