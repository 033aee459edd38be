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

import asyncpg
import structlog
from asyncpg.transaction import Transaction
from prometheus_client import Counter

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database, is_transient
from rwasync.platform.grouping import GroupCommit
from rwasync.platform.http import Problem, service_unavailable
from rwasync.schema import events, topology
from rwasync.schema.event_ids import new_event_ids
from rwasync.schema.events import Arrival, EventType, WireEvent, encode_wire_events
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
    return events.asset_upserted_wire(
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
    return events.price_updated_wire(
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


@dataclass(frozen=True)
class PublishingLimits:
    events_per_message: int = 250
    coalesce_max_events: int = 500
    publishers: int = 2


class EventPublisher:
    """Publishes accepted events with the broker's confirm and records their `accepted` receipts.

    A single request's event shares a broker message with the events of concurrent requests
    (`accept_one`): while messages await their confirms, new events gather for the next, so a
    busy service sends few large messages and each request waits at most about one confirm
    longer than alone. A batch's events (`accept_many`) leave in chunks published concurrently,
    so their confirms are pipelined, and the answer waits for all of them.

    Receipts are inserted while the confirm is awaited, in a transaction committed only once the
    broker confirmed (rolled back when it did not): a request waits for the commit's round trip
    after its confirm, not for a whole insert, and no receipt ever says `accepted` of an event
    the broker did not take.
    """

    def __init__(self, broker: Broker, db: Database, limits: PublishingLimits) -> None:
        self._broker = broker
        self._limits = limits
        self._db = db
        self._coalesced = {
            exchange: GroupCommit(
                self._publish_coalesced,
                max_items=limits.coalesce_max_events,
                max_concurrent=limits.publishers,
            )
            for exchange in (topology.ASSETS_EXCHANGE, topology.PRICES_EXCHANGE)
        }

    async def accept_one(self, event: WireEvent) -> None:
        """Return once the broker confirmed the event (in its wire form: `wire_event` of a
        model) and its receipt was recorded or given up on; raise a 503 Problem when the broker
        did not confirm."""
        exchange = exchange_of(event["type"])
        try:
            await self._coalesced[exchange].submit([event])
        except BrokerUnavailable as exc:
            raise _unavailable(exc, exchange, 1) from None
        self._count([(event["type"], event["source"])])

    async def accept_many(self, events: Sequence[WireEvent]) -> None:
        """Return once the broker confirmed every event of a batch (in their wire form,
        `wire_event`; see `accepted_run`); raise a 503 Problem when any chunk was not (the client
        retries the whole request; events already published repeat harmlessly under the version
        guard)."""
        if not events:
            return
        run = accepted_run(events)  # checked before anything is published
        size = self._limits.events_per_message
        chunks = [events[i : i + size] for i in range(0, len(events), size)]

        async def publish() -> None:
            outcomes = await asyncio.gather(
                *(self._publish_wire(chunk) for chunk in chunks), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BrokerUnavailable):
                    raise _unavailable(outcome, exchange_of(run.type), len(events)) from None
                if isinstance(outcome, BaseException):
                    raise outcome

        await self._confirmed_and_recorded(
            publish(), lambda conn: receipts.record_accepted_run(conn, run), events
        )
        self._count([(e["type"], e["source"]) for e in events])

    async def _publish_coalesced(self, events: list[WireEvent]) -> None:
        await self._confirmed_and_recorded(
            self._publish_wire(events),
            lambda conn: receipts.record_accepted_wire(conn, events),
            events,
        )

    async def _publish_wire(self, events: Sequence[WireEvent]) -> None:
        exchange, routing_key = _route([e["type"] for e in events])
        message_id, body = encode_wire_events(events)
        await self._broker.publish_events(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            events=len(events),
            trace_id=events[0]["trace_id"],
        )

    async def _confirmed_and_recorded(
        self,
        publish: Awaitable[None],
        record: Callable[[asyncpg.Connection], Awaitable[None]],
        events: Sequence[WireEvent],
    ) -> None:
        """Await `publish` (the broker's confirm; its exception propagates) while `record`
        inserts the events' receipts in a transaction; commit that once confirmed, roll it back
        otherwise. The events are durable in the broker once confirmed, so failing the request
        then would only make the client send them again: a receipt that cannot be recorded is
        logged and counted, and its consumer records the decided one anyway."""
        opening = asyncio.create_task(self._open_receipts(record))
        try:
            await publish
        except BaseException:
            await self._abandon(opening)
            raise
        try:
            conn, transaction = await opening
            try:
                async with asyncio.timeout(RECEIPT_TIMEOUT):
                    await transaction.commit()
            finally:
                await self._db.pool.release(conn)
        except Exception as exc:
            _receipts_not_recorded(exc, events)

    async def _open_receipts(
        self, record: Callable[[asyncpg.Connection], Awaitable[None]]
    ) -> tuple[asyncpg.Connection, Transaction]:
        """A connection with a transaction holding the inserted receipts, not yet committed."""
        async with asyncio.timeout(RECEIPT_TIMEOUT):
            conn = await self._db.pool.acquire()
            try:
                transaction = conn.transaction()
                await transaction.start()
                await record(conn)
            except BaseException:
                await self._db.pool.release(conn)  # which rolls back an open transaction
                raise
        return conn, transaction

    async def _abandon(self, opening: asyncio.Task[tuple[asyncpg.Connection, Transaction]]) -> None:
        """Not confirmed: the receipts are rolled back (or never inserted)."""
        opening.cancel()
        try:
            conn, _ = await opening
        except BaseException:  # cancelled or failed: it released its connection itself
            return
        await self._db.pool.release(conn)  # which rolls the open transaction back

    def _count(self, kinds: Sequence[tuple[str, str]]) -> None:
        # One increment per kind, not per event: a batch of thousands costs a few.
        for (kind, source), count in Tally(kinds).items():
            EVENTS_ACCEPTED.labels(str(kind), str(source)).inc(count)


def _receipts_not_recorded(exc: Exception, events: Sequence[WireEvent]) -> None:
    RECEIPT_FAILURES.inc(len(events))
    context = {
        "events": len(events),
        "first_event_id": str(events[0]["event_id"]),
        "first_asset_id": events[0]["asset_id"],
        "error": repr(exc),
    }
    if is_transient(exc):
        log.warning("accepted receipts not recorded: database unavailable", **context)
    else:
        log.error("accepted receipts not recorded", exc_info=True, **context)
