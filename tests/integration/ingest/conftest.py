"""ingest-api in-process on 127.0.0.1, against a real Postgres database and RabbitMQ vhost.

One service, database and vhost serve the whole module (a vhost costs three `rabbitmqctl` calls,
about two seconds); each test stays isolated by acting as a provider of its own and by purging the
two work queues before it starts.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rwasync.ingest_api.app import create_app
from rwasync.ingest_api.settings import IngestSettings
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.store.tenants import issue_provider_credential, new_id
from tests.support.infra import Infra, create_database, drop_database, unique_name
from tests.support.waiting import eventually


def ingest_settings(database_url: str, amqp_url: str, **overrides: Any) -> IngestSettings:
    """Settings for a test service; the failed-authentication limit is lifted (tests of bad
    credentials share one client address) unless a test sets it, and a repeat waits for a key
    still in flight for 3 s."""
    return IngestSettings.model_validate(
        {
            "RWASYNC_DATABASE_URL": database_url,
            "RWASYNC_AMQP_URL": amqp_url,
            "auth_failures_per_minute": 1_000_000,
            "idempotency_wait_seconds": 3,
            **overrides,
        }
    )


async def serve(app: web.Application) -> TestClient[web.Request, web.Application]:
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    return client


async def readiness(client: TestClient[web.Request, web.Application]) -> dict[str, Any]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return body


@dataclass(frozen=True)
class Provider:
    provider_id: str
    key_id: str
    secret: str
    token: str

    @property
    def basic(self) -> dict[str, str]:
        pair = base64.b64encode(f"{self.key_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_provider(db: Database, *, disabled: bool = False) -> Provider:
    provider_id = new_id("prv")
    credential = issue_provider_credential()
    await db.execute(
        "INSERT INTO providers (provider_id, name, disabled) VALUES ($1, $2, $3)",
        provider_id,
        f"Estates {provider_id}",
        disabled,
    )
    await db.execute(
        """INSERT INTO provider_credentials (key_id, provider_id, secret_digest, token_digest)
           VALUES ($1, $2, $3, $4)""",
        credential.key_id,
        provider_id,
        credential.secret_digest,
        credential.token_digest,
    )
    return Provider(provider_id, credential.key_id, credential.secret, credential.token)


@dataclass(frozen=True)
class Queues:
    assets: AbstractQueue
    prices: AbstractQueue

    async def next(self, queue: AbstractQueue, timeout: float = 5.0) -> AbstractIncomingMessage:
        async def take() -> AbstractIncomingMessage | None:
            return await queue.get(no_ack=True, fail=False)

        message = await eventually(
            take, lambda m: m is not None, timeout=timeout, interval=0.02, what=queue.name
        )
        assert message is not None
        return message

    async def depth(self, queue: AbstractQueue) -> int:
        declared = await queue.channel.declare_queue(queue.name, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


# --- the module's infrastructure ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest_database_url(test_infra: Infra, template_database: str) -> Iterator[str]:
    name = unique_name("rwasync_ingest")
    asyncio.run(create_database(test_infra.postgres_admin_url, name, template=template_database))
    yield test_infra.database_url(name)
    asyncio.run(drop_database(test_infra.postgres_admin_url, name))


@pytest.fixture(scope="module")
def ingest_amqp_url(test_infra: Infra) -> Iterator[str]:
    vhost = unique_name("rwasync_ingest")
    test_infra.rabbit.add_vhost(vhost)
    yield test_infra.amqp_vhost_url(vhost)
    test_infra.rabbit.delete_vhost(vhost)


@pytest.fixture(scope="module")
async def ingest(
    ingest_database_url: str, ingest_amqp_url: str
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The running service, answering `/readyz` 200 (database connected, topology declared)."""
    client = await serve(create_app(ingest_settings(ingest_database_url, ingest_amqp_url)))
    try:
        await eventually(
            lambda: readiness(client),
            lambda body: body["status"] == "ready",
            timeout=30,
            what="ingest-api ready",
        )
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def store(ingest_database_url: str) -> AsyncIterator[Database]:
    database = Database(ingest_database_url, min_size=1, max_size=2)
    database.start()
    await database.wait_connected(timeout=30)
    yield database
    await database.close()


@pytest.fixture(scope="module")
async def amqp_channel(
    ingest_amqp_url: str, ingest: TestClient[web.Request, web.Application]
) -> AsyncIterator[AbstractChannel]:
    # Depends on `ingest`: the service declares the topology these queues belong to.
    connection = await aio_pika.connect(ingest_amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


# --- per test ------------------------------------------------------------------------------------


@pytest.fixture
async def queues(amqp_channel: AbstractChannel) -> Queues:
    """Both work queues, emptied of what earlier tests published."""
    assets = await amqp_channel.declare_queue(topology.RECONCILER_QUEUE, passive=True)
    prices = await amqp_channel.declare_queue(topology.PRICING_QUEUE, passive=True)
    await assets.purge()
    await prices.purge()
    return Queues(assets, prices)


@pytest.fixture
async def provider(store: Database) -> Provider:
    return await create_provider(store)
