"""The pricing service in-process against real Postgres and a RabbitMQ vhost of the test's own:
a reader token, an HTTP client once the service (and its stream) is live, and a way to push ticks
through the broker as ingest-api would (many per message)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.pricing.app import HUB, create_app
from rwasync.pricing.settings import PricingSettings
from rwasync.schema import topology
from rwasync.schema.events import Arrival, EventSource, PriceUpdated, price_updated
from rwasync.schema.messages import message_for
from rwasync.schema.timestamps import utc_now
from rwasync.store.tenants import digest, issue_reader_token
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
Push = Callable[..., Awaitable[list[PriceUpdated]]]

READER = issue_reader_token()
DECIDED = "SELECT count(*) FROM event_receipts WHERE event_id = ANY($1) AND status <> 'accepted'"


def reader_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {READER}"}


@pytest.fixture
async def reader(db: Database) -> str:
    await db.execute(
        "INSERT INTO readers (reader_id, name, token_digest) VALUES ('rdr_1', 'Portal', $1)",
        digest(READER),
    )
    return READER


@pytest.fixture
async def pricing(
    database_url: str, vhost_amqp_url: str, reader: str
) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Starts pricing with settings overrides (field names), live: consuming, stream connected."""
    clients: list[Client] = []

    async def start(**overrides: Any) -> Client:
        settings = PricingSettings.model_validate(
            {"RWASYNC_DATABASE_URL": database_url, "RWASYNC_AMQP_URL": vhost_amqp_url}
        ).model_copy(update=overrides)
        app = create_app(settings)
        client: Client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)

        async def live() -> bool:
            body = await (await client.get("/readyz")).json()
            return body["status"] == "ready" and app[HUB].is_live()

        await eventually(live, bool, timeout=60, what="pricing ready with its stream live")
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def push(vhost_amqp_url: str, db: Database) -> AsyncIterator[Push]:
    """Publishes ticks as one broker message, as ingest-api's batch call does, and waits until
    pricing decided them: messages are consumed concurrently, so without waiting a later push
    could be applied first (and the earlier one, older, rightly change nothing)."""
    broker = Broker(vhost_amqp_url, name="test-pusher")
    broker.start()
    await broker.wait_ready(30)

    async def publish(
        provider_id: str, ticks: list[tuple[str, str]], *, as_of: datetime | None = None
    ) -> list[PriceUpdated]:
        now = utc_now()
        arrival = Arrival(provider_id, EventSource.BATCH, now)
        events = [
            price_updated(
                arrival,
                asset_id=asset_id,
                amount=Decimal(amount),
                currency="USD",
                as_of=as_of or now,
                accepted_at=now + timedelta(microseconds=i),  # in request order, as ingest-api
            )
            for i, (asset_id, amount) in enumerate(ticks)
        ]
        await broker.publish(
            topology.PRICES_EXCHANGE, topology.PRICE_BATCH_KEY, message_for(events)
        )
        ids = [e.event_id for e in events]
        await eventually(
            lambda: db.fetchval(DECIDED, ids),
            lambda count: count == len(ids),
            timeout=60,
            what="pushed ticks decided",
        )
        return events

    yield publish
    await broker.close()
