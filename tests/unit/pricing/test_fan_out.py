"""The stream's fan-out in memory: each change rendered once as its SSE event and the same bytes
handed to every subscriber, a subscriber's filter applied, its backlog taken whole per write, and
a backlog over capacity marking it slow (dropped) without touching the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from rwasync.pricing.hub import ChangeHub, PriceChange, Subscriber
from rwasync.pricing.stream import never_waits, unsent

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(change_id: int, asset_id: str, provider_id: str = "prv_a") -> dict[str, Any]:
    return {
        "xid": 7,
        "change_id": change_id,
        "provider_id": provider_id,
        "asset_id": asset_id,
        "amount": Decimal("101.5"),
        "currency": "USD",
        "as_of": NOW,
        "accepted_at": NOW,
        "price_freshness": timedelta(days=1),
        "disabled": False,
    }


def hub_with(*subscribers: Subscriber) -> ChangeHub:
    hub = ChangeHub(None, None, poll_seconds=1)  # type: ignore[arg-type]  # _offer needs neither
    for s in subscribers:
        hub._subscribers.setdefault(s.provider_id, set()).add(s)
    hub._position = (0, 0)
    return hub


async def test_a_change_is_rendered_once_for_every_subscriber() -> None:
    everything = Subscriber("prv_a", None, 128)
    one_asset = Subscriber("prv_a", frozenset({"a2"}), 128)
    elsewhere = Subscriber("prv_b", None, 128)
    hub = hub_with(everything, one_asset, elsewhere)
    hub._offer([row(1, "a1"), row(2, "a2")], NOW)  # type: ignore[list-item]
    sent = everything.take()
    assert [c.asset_id for c in sent] == ["a1", "a2"]
    assert one_asset.take() == [sent[1]] and one_asset.backlog == []
    assert elsewhere.backlog == [] and not elsewhere.ready.is_set()
    frame = sent[0].frame
    head, data = frame.split(b"\ndata: ")
    assert head == b"id: 7-1\nevent: price" and data.endswith(b"\n\n")
    assert orjson.loads(data)["asset_id"] == "a1"
    assert hub._position == (7, 2)


async def test_the_same_bytes_object_goes_to_every_subscriber() -> None:
    first, second = Subscriber("prv_a", None, 128), Subscriber("prv_a", None, 128)
    hub_with(first, second)._offer([row(1, "a1")], NOW)  # type: ignore[list-item]
    assert first.take()[0].frame is second.take()[0].frame


async def test_a_backlog_over_capacity_marks_only_that_subscriber_slow() -> None:
    slow, other = Subscriber("prv_a", None, 128), Subscriber("prv_a", None, 256)
    changes = [PriceChange((1, i), "prv_a", "a1", b"x") for i in range(100)]
    for s in (slow, other):
        s.offer(changes)
        s.offer(changes[:28])
    assert not slow.slow.is_set() and len(slow.backlog) == 128
    slow.offer(changes[:1])
    assert slow.slow.is_set() and slow.ready.is_set() and slow.backlog == []
    assert not other.slow.is_set() and len(other.backlog) == 128
    slow.offer(changes)
    assert slow.backlog == []  # dropped: nothing more is queued for it


async def test_a_write_takes_the_whole_backlog_and_skips_what_was_replayed() -> None:
    s = Subscriber("prv_a", None, 128)
    s.offer([PriceChange((1, i), "prv_a", "a1", b"x") for i in range(5)])
    taken = s.take()
    assert len(taken) == 5 and s.backlog == [] and not s.ready.is_set()
    assert [c.position for c in unsent(taken, (1, 2))] == [(1, 3), (1, 4)]
    assert unsent(taken, (0, 9)) == taken


class FakeTransport(asyncio.WriteTransport):
    def __init__(self, buffered: int, closing: bool = False) -> None:
        super().__init__()
        self.buffered, self.closing = buffered, closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def is_closing(self) -> bool:
        return self.closing


def test_a_write_needs_its_timeout_only_when_it_could_wait() -> None:
    assert never_waits(FakeTransport(0), 10_000)
    assert not never_waits(FakeTransport(0), 65_536)  # would cross the high-water mark
    assert not never_waits(FakeTransport(1), 10)  # data still queued: perhaps paused
    assert not never_waits(FakeTransport(0, closing=True), 10)
    assert not never_waits(None, 10)
