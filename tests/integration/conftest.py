"""Integration fixtures: a connected Database on the test's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rwasync.platform.broker import Broker
from rwasync.platform.db import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, min_size=1, max_size=4)
    database.start()
    await database.wait_connected(timeout=30)
    yield database
    await database.close()


@pytest.fixture
async def provider_id(db: Database) -> str:
    await db.execute(
        "INSERT INTO providers (provider_id, name) VALUES ('prv_test', 'Test Estates')"
    )
    return "prv_test"


@pytest.fixture
async def broker(vhost_amqp_url: str) -> AsyncIterator[Broker]:
    """A connected broker on the test's own vhost, topology declared."""
    b = Broker(vhost_amqp_url, publish_timeout=5, name="test")
    b.start()
    await b.wait_ready(timeout=30)
    yield b
    await b.close()
