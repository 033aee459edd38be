"""Concurrent single writes share broker messages (`EventPublisher.accept_one`, coalesced by
GroupCommit) up to `coalesce_max_events` events (500). A single write may carry a document of up
to 1 MiB, so a handful of large concurrent PUTs made one message over RabbitMQ 4's default
`max_message_size` (16 MiB): the broker refuses it (and closes the channel), and every request
in that message, other providers' small ones included, was a 503 (review). Messages are now cut
at `topology.MESSAGE_BYTES_BUDGET` as well."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from rwasync.ingest_api.acceptance import (
    AcceptanceClock,
    EventPublisher,
    PublishingLimits,
    asset_upserted,
)
from rwasync.ingest_api.settings import IngestSettings
from rwasync.schema import jsonsafe, topology
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.valid_asset import validate_asset
from tests.support.events import large_asset_doc

pytestmark = pytest.mark.unit


class SizeRecordingBroker:
    """Confirms each publish after a short while (as a broker under load does), recording sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.asset_ids: list[str] = []

    async def publish_events(self, _exchange: str, _key: str, body: bytes, **_: Any) -> None:
        await asyncio.sleep(0.05)
        self.sizes.append(len(body))
        self.asset_ids += [e["asset_id"] for e in json.loads(body)["events"]]


class NoDatabase:
    """Receipts are a courtesy: their failure is logged and the 202 stands."""


def large_document(n: int) -> bytes:
    """A valid asset of about 0.8 MB: within RWASYNC_INGEST_MAX_BODY_BYTES (1 MiB)."""
    document = large_asset_doc(f"large-{n}")
    return json.dumps(document).encode()


async def test_concurrent_single_writes_never_share_a_message_over_the_broker_limit() -> None:
    now = datetime.now(UTC)
    bodies = [large_document(n) for n in range(30)]
    assert max(len(b) for b in bodies) <= IngestSettings.model_fields["max_body_bytes"].default
    assets = [validate_asset(jsonsafe.loads(body), now=now) for body in bodies]
    clock = AcceptanceClock()
    arrival = Arrival("prv_0123456789abcdef", EventSource.PUSH, now, "t" * 32)
    broker = SizeRecordingBroker()
    publisher = EventPublisher(broker, NoDatabase(), PublishingLimits())  # type: ignore[arg-type]
    await asyncio.gather(
        *(publisher.accept_one(asset_upserted(a, arrival, clock.next())) for a in assets)
    )
    assert max(broker.sizes) <= topology.MESSAGE_BYTES_BUDGET, broker.sizes
    assert sorted(broker.asset_ids) == sorted(a.id for a in assets)
