"""A broker that blocks publishing (a memory or disk alarm) makes ingest-api answer 503 with
`Retry-After` at once, without waiting for the confirm timeout, and accept nothing."""

from __future__ import annotations

import json
import time

import pytest

from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from tests.integration.ingest.conftest import create_provider, ingest_settings, readiness, serve
from tests.integration.ingest.helpers import JSON, house, problem
from tests.support.private_servers import blocked_rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_a_blocked_broker_is_503_at_once(database_url: str) -> None:
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    try:
        await _refused_at_once(db, database_url)
    finally:
        await db.close()


async def _refused_at_once(db: Database, database_url: str) -> None:
    with blocked_rabbit() as amqp_url:
        # A confirm timeout far longer than the answer may take: only the block explains a 503.
        settings = ingest_settings(database_url, amqp_url, publish_timeout=60)
        client = await serve(create_app(settings))
        try:
            await eventually(
                lambda: readiness(client), lambda body: body["status"] == "ready", timeout=60
            )
            provider = await create_provider(db)
            for path, body in (
                ("/v1/assets/blocked-1", house("blocked-1")),
                (
                    "/v1/assets/blocked-1/price",
                    {"amount": 1, "currency": "USD", "as_of": "2025-01-01T00:00:00Z"},
                ),
            ):
                began = time.monotonic()
                response = await client.put(
                    path, data=json.dumps(body), headers={**JSON, **provider.basic}
                )
                await problem(response, 503)
                assert int(response.headers["Retry-After"]) > 0
                assert time.monotonic() - began < 10
            response = await client.post(
                "/v1/assets/batch",
                data=json.dumps({"assets": [house("b-1"), house("b-2")]}),
                headers={**JSON, **provider.basic},
            )
            await problem(response, 503)
            assert await db.fetchval("SELECT count(*) FROM event_receipts") == 0
        finally:
            await client.close()
