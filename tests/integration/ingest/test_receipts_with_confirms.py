"""ingest-api records `accepted` receipts only of what the broker confirmed: a confirmed event's
receipt is there when the call returns; an unconfirmed one's never appears, whether the broker
refuses at once or after a while; and no database connection is left behind either way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rwasync.ingest_api.acceptance import AcceptanceClock, EventPublisher, PublishingLimits
from rwasync.platform.broker import BrokerUnavailable
from rwasync.platform.db import Database
from rwasync.platform.http import Problem
from rwasync.schema.event_ids import new_event_ids
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.messages import WireEvent, price_updated_wire
from tests.support.events import at

pytestmark = pytest.mark.integration


class SlowBroker:
    """Confirms (or refuses) each publish after `delay` seconds."""

    def __init__(self, delay: float, *, confirm: bool) -> None:
        self.delay = delay
        self.confirm = confirm
        self.published: list[int] = []

    async def publish_events(self, *_: Any, events: int, **__: Any) -> None:
        await asyncio.sleep(self.delay)
        if not self.confirm:
            raise BrokerUnavailable("not confirmed")
        self.published.append(events)


def ticks(count: int, source: EventSource = EventSource.PUSH) -> list[WireEvent]:
    arrival = Arrival("prv_r", source, at(0))
    instants = AcceptanceClock().instants(count)
    return [
        price_updated_wire(
            arrival,
            event_id=event_id,
            asset_id=f"a{n}",
            amount=n + 1,
            currency="USD",
            as_of=at(0),
            accepted_at=instant,
        )
        for n, (event_id, instant) in enumerate(zip(new_event_ids(count), instants, strict=True))
    ]


def publisher(db: Database, broker: SlowBroker) -> EventPublisher:
    return EventPublisher(broker, db, PublishingLimits(events_per_message=2))  # type: ignore[arg-type]


async def receipts_of(db: Database, events: list[WireEvent]) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT event_id::text AS id, status FROM event_receipts WHERE event_id = ANY($1::uuid[])",
        [e["event_id"] for e in events],
    )
    return {row["id"]: row["status"] for row in rows}


async def test_confirmed_events_have_their_receipts_when_the_call_returns(db: Database) -> None:
    broker = SlowBroker(0.2, confirm=True)
    events = ticks(12)
    batch = ticks(5, EventSource.BATCH)
    accepting = publisher(db, broker)
    await asyncio.gather(
        *(accepting.accept_one(event) for event in events), accepting.accept_many(batch)
    )
    assert await receipts_of(db, events + batch) == {
        e["event_id"]: "accepted" for e in events + batch
    }
    assert sum(broker.published) == 17
    assert db.pool.get_size() - db.pool.get_idle_size() == 0  # every connection back


async def test_unconfirmed_events_leave_no_receipt_behind(db: Database) -> None:
    events = ticks(12)
    batch = ticks(5, EventSource.BATCH)
    accepting = publisher(db, SlowBroker(0.2, confirm=False))
    outcomes = await asyncio.gather(
        *(accepting.accept_one(event) for event in events),
        accepting.accept_many(batch),
        return_exceptions=True,
    )
    assert all(isinstance(o, Problem) and o.status == 503 for o in outcomes)
    assert await receipts_of(db, events + batch) == {}
    assert db.pool.get_size() - db.pool.get_idle_size() == 0


async def test_a_refusal_before_the_insert_ends_leaves_nothing_either(db: Database) -> None:
    """The broker refuses at once (an alarm)."""
    events = ticks(3)
    accepting = publisher(db, SlowBroker(0, confirm=False))
    outcomes = await asyncio.gather(
        *(accepting.accept_one(event) for event in events), return_exceptions=True
    )
    assert all(isinstance(o, Problem) for o in outcomes)
    await asyncio.sleep(0.1)
    assert await receipts_of(db, events) == {}
    assert db.pool.get_size() - db.pool.get_idle_size() == 0
