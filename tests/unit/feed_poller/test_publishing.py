"""The feed run's publisher fails the run on any error of a send, not only the broker's: a
message that was never sent must not let the run end `ok` (a review found a `KeyError` in a
send lost, the run finishing `ok` without its events)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from rwasync.feed_poller.publishing import ConfirmedPublisher
from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.schema.messages import WireEvent

pytestmark = pytest.mark.unit

EVENTS = cast(list[WireEvent], [{"type": "asset.upserted", "event_id": "e1", "asset_id": "a"}])


class _Broker:
    """Stands in for the broker's one call the publisher makes; raises `error` from it."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent = 0

    async def publish_body(self, *_: Any, **__: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent += 1


def _publisher(error: Exception | None) -> tuple[ConfirmedPublisher, _Broker]:
    broker = _Broker(error)
    return ConfirmedPublisher(cast(Broker, broker), window=4, stall_seconds=30), broker


@pytest.mark.parametrize(
    "error", [BrokerUnavailable("nacked"), KeyError("rwasync.no-such-exchange")]
)
async def test_a_failed_send_fails_the_pass_whatever_the_error(error: Exception) -> None:
    publisher, _ = _publisher(error)
    confirmed: list[list[WireEvent]] = []
    with pytest.raises(type(error)):
        async with publisher:
            await publisher.publish("x", "k", EVENTS, confirmed.append)
    assert confirmed == []


async def test_an_error_in_the_confirm_callback_fails_the_pass() -> None:
    publisher, broker = _publisher(None)

    def on_confirm(_: list[WireEvent]) -> None:
        raise ValueError("a bug counting what was confirmed")

    with pytest.raises(ValueError, match="counting"):
        async with publisher:
            await publisher.publish("x", "k", EVENTS, on_confirm)
    assert broker.sent == 1


async def test_sent_messages_are_counted_on_their_confirm() -> None:
    publisher, broker = _publisher(None)
    confirmed: list[list[WireEvent]] = []
    async with publisher:
        for _ in range(10):
            await publisher.publish("x", "k", EVENTS, confirmed.append)
    assert (broker.sent, len(confirmed)) == (10, 10)
