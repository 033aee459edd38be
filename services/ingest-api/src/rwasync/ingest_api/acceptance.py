"""Accepting changes: the instants that order them, the events that carry them, and the one way
they leave this service — published with a broker confirm, then receipted as `accepted`.

A change counts as accepted when ingest-api answers 202, and its acceptance instant breaks ties
between versions with equal `updated_at` (docs/api.md, "Versions and ordering"); so instants must
be unique and increasing within the process, and a batch takes a run of consecutive ones in
request order.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import structlog
from prometheus_client import Counter

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database, is_transient
from rwasync.platform.grouping import GroupCommit
from rwasync.platform.http import Problem, service_unavailable
from rwasync.schema import messages, topology
from rwasync.schema.event_ids import new_event_ids
from rwasync.schema.events import Arrival, EventType
from rwasync.schema.messages import WireEvent, encode_wire_messages
from rwasync.schema.price import Price
from rwasync.schema.timestamps import utc_now
from rwasync.schema.valid_asset import ValidAsset
from rwasync.store import receipts

log = structlog.get_logger(__name__)

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


def asset_upserted(
    asset: ValidAsset, arrival: Arrival, accepted_at: datetime, event_id: str | None = None
) -> WireEvent:
    return messages.asset_upserted_wire(
        arrival,
        event_id=event_id or new_event_ids(1)[0],
        asset_id=asset.id,
        updated_at=asset.updated_at,
        accepted_at=accepted_at,
        document=asset.document,
        content_hash=hashlib.sha256(asset.canonical).hexdigest(),
    )


def price_updated(
    asset_id: str,
    price: Price,
    arrival: Arrival,
    accepted_at: datetime,
    event_id: str | None = None,
) -> WireEvent:
    return messages.price_updated_wire(
        arrival,
        event_id=event_id or new_event_ids(1)[0],
        asset_id=asset_id,
        amount=price.amount,
        currency=price.currency,
        as_of=price.as_of,
        accepted_at=accepted_at,
    )


def _route(types: Sequence[str]) -> tuple[str, str]:
    """(exchange, routing key) of a message of events of these types: a single event goes by its
    type, several by the batch key."""
    exchange = exchange_of(types[0])
    if any(exchange_of(t) != exchange for t in set(types)):
        raise ValueError("asset and price events travel on different exchanges")
    if len(types) == 1:
        return exchange, str(types[0])
    batch_key = topology.PRICE_BATCH_KEY
    if exchange == topology.ASSETS_EXCHANGE:
        batch_key = topology.ASSET_BATCH_KEY
    return exchange, batch_key


def exchange_of(event_type: str) -> str:
    if event_type == EventType.PRICE_UPDATED:
        return topology.PRICES_EXCHANGE
    return topology.ASSETS_EXCHANGE


def _unavailable(exc: BrokerUnavailable, exchange: str, events: int) -> Problem:
    PUBLISH_FAILURES.labels(exchange).inc()
    log.warning("publish not confirmed", exchange=exchange, events=events, error=str(exc))
    return service_unavailable(
        "the change could not be stored durably right now; retry shortly",
        retry_after=BROKER_RETRY_AFTER,
    )


def accepted_run(events: Sequence[WireEvent]) -> receipts.AcceptedRun:
    """The receipts of a batch's events: one kind from one request, accepted at consecutive
    instants (`AcceptanceClock.instants`). Anything else is a programming error."""
    first, last = events[0], events[-1]
    if last["accepted_at"] - first["accepted_at"] != (len(events) - 1) * MICROSECOND:
        raise ValueError("a batch's events take consecutive acceptance instants")
    if len({(e["provider_id"], e["type"], e["trace_id"]) for e in events}) != 1:
        raise ValueError("a batch's events share their provider, type and trace")
    return receipts.AcceptedRun(
        provider_id=first["provider_id"],
        type=str(first["type"]),
        trace_id=first["trace_id"],
        first_accepted_at=first["accepted_at"],
        event_ids=[e["event_id"] for e in events],
        asset_ids=[e["asset_id"] for e in events],
    )


async def _within_receipt_timeout(recording: Awaitable[None]) -> None:
    async with asyncio.timeout(RECEIPT_TIMEOUT):
        await recording


@dataclass(frozen=True)
class PublishingLimits:
    events_per_message: int = 1000
    price_events_per_message: int = 250
    coalesce_max_events: int = 500
    publishers: int = 2


class EventPublisher:
    """Publishes accepted events with the broker's confirm, then records their `accepted`
    receipts.

    A single request's event shares a broker message with the events of concurrent requests
    (`accept_one`): while messages await their confirms, new events gather for the next, so a
    busy service sends few large messages and each request waits at most about one confirm
    longer than alone. A batch's events (`accept_many`) leave in chunks published concurrently,
    so their confirms are pipelined, and the answer waits for all of them.
    """

    def __init__(self, broker: Broker, db: Database, limits: PublishingLimits) -> None:
        self._broker = broker
        self._limits = limits
        self._receipts = GroupCommit(self._record_accepted)
        self._db = db
        self._coalesced = {
            exchange: GroupCommit(
                self._publish_wire,
                max_items=limits.coalesce_max_events,
                max_concurrent=limits.publishers,
            )
            for exchange in (topology.ASSETS_EXCHANGE, topology.PRICES_EXCHANGE)
        }

    async def accept_one(self, event: WireEvent) -> None:
        """Return once the broker confirmed the event (in its wire form: `asset_upserted`,
        `price_updated` or `messages.wire_event` of a model); raise a 503 Problem when it did
        not."""
        exchange = exchange_of(event["type"])
        try:
            await self._coalesced[exchange].submit([event])
        except BrokerUnavailable as exc:
            raise _unavailable(exc, exchange, 1) from None
        self._count([(event["type"], event["source"])])
        await self._record_receipts(
            lambda: self._receipts.submit([event]),
            1,
            event["event_id"],
            event["asset_id"],
        )

    async def accept_many(self, events: Sequence[WireEvent]) -> None:
        """Return once the broker confirmed every event of a batch (in their wire form,
        `wire_event`; see `accepted_run`); raise a 503 Problem when any chunk was not (the client
        retries the whole request; events already published repeat harmlessly under the version
        guard)."""
        if not events:
            return
        run = accepted_run(events)  # checked before anything is published
        size = self._limits.events_per_message
        if exchange_of(events[0]["type"]) == topology.PRICES_EXCHANGE:
            size = self._limits.price_events_per_message
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        outcomes = await asyncio.gather(
            *(self._publish_wire(chunk) for chunk in chunks), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BrokerUnavailable):
                raise _unavailable(outcome, exchange_of(events[0]["type"]), len(events)) from None
            if isinstance(outcome, BaseException):
                raise outcome
        self._count([(e["type"], e["source"]) for e in events])
        await self._record_receipts(
            lambda: _within_receipt_timeout(receipts.record_accepted_run(self._db.pool, run)),
            len(events),
            run.event_ids[0],
            run.asset_ids[0],
        )

    async def _publish_wire(self, events: Sequence[WireEvent]) -> None:
        """One message of `events`, or several when it would be over the broker's size limit
        (`topology.MESSAGE_BYTES_BUDGET`), published side by side; raises the first failure."""
        exchange, routing_key = _route([e["type"] for e in events])
        messages = encode_wire_messages(events, topology.MESSAGE_BYTES_BUDGET)
        sent = [
            self._broker.publish_events(
                exchange,
                routing_key,
                body,
                message_id=message_id,
                events=len(part),
                trace_id=part[0]["trace_id"],
            )
            for message_id, body, part in messages
        ]
        if len(sent) == 1:
            await sent[0]
            return
        for outcome in await asyncio.gather(*sent, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _count(self, kinds: Sequence[tuple[str, str]]) -> None:
        # One increment per kind, not per event: a batch of thousands costs a few.
        for (kind, source), count in Tally(kinds).items():
            EVENTS_ACCEPTED.labels(str(kind), str(source)).inc(count)

    async def _record_accepted(self, events: list[WireEvent]) -> None:
        # The deadline is the group's: one timer per insert, not one per request.
        await _within_receipt_timeout(receipts.record_accepted_wire(self._db.pool, events))

    async def _record_receipts(
        self, record: Callable[[], Awaitable[None]], events: int, event_id: object, asset_id: str
    ) -> None:
        # The events are durable in the broker: failing the request now would only make the
        # client send them again. Log, count, and answer 202. Concurrent requests' receipts
        # share one insert; a batch's all go in one of its own.
        try:
            await record()
        except Exception as exc:
            RECEIPT_FAILURES.inc(events)
            context = {
                "events": events,
                "first_event_id": str(event_id),
                "first_asset_id": asset_id,
                "error": repr(exc),
            }
            if is_transient(exc):
                log.warning("accepted receipt not recorded: database unavailable", **context)
            else:
                log.error("accepted receipt not recorded", exc_info=True, **context)
