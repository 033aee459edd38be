"""The price stream's hub against the real broker and database: a failure while it starts (the
broker reconnecting at that moment, or the database away) is tried again, never the end of the
stream on that replica."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.pricing.app import HUB
from rwasync.pricing.hub import ChangeHub
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_the_hub_goes_live_after_its_start_failed(
    broker: Broker, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = broker.connection
    real_channel = connection.channel
    calls = []

    def channel(*args: Any, **kwargs: Any) -> Any:
        calls.append(True)
        if len(calls) == 1:  # the robust connection is between transports at the first try
            raise ChannelInvalidStateError("No active transport in channel")
        return real_channel(*args, **kwargs)

    monkeypatch.setattr(connection, "channel", channel)
    hub = ChangeHub(db, broker, poll_seconds=0.2)
    hub.start()
    try:
        assert await eventually(lambda: asyncio.sleep(0, hub.is_live()), bool, timeout=20)
        assert len(calls) == 2
        subscriber, _ = await hub.subscribe("prv_x", None, capacity=10, timeout=1)
        hub.unsubscribe(subscriber)
    finally:
        await hub.stop()


async def test_pricing_reports_its_stream_in_readiness(pricing: Any) -> None:
    client = await pricing()  # ready, its stream live
    body = await (await client.get("/readyz")).json()
    assert body["checks"]["price_stream"] is True
    await client.app[HUB].stop()  # the hub gone: this replica cannot serve the stream
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["price_stream"] is False
