"""A process sharing ingest-api's port (several processes, or replicas with SO_REUSEPORT) starts
listening only once Postgres and RabbitMQ answer, for a bounded time: the kernel hands
connections to every listener, so a process still connecting would otherwise refuse writes with
503 while another's /readyz already said ready. One process alone listens at once, as every
service does, and says what it still waits for on /readyz."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from rwasync.ingest_api.app import create_app
from tests.integration.ingest.conftest import ingest_settings, readiness, serve
from tests.support.system import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sharing", [{"processes": 2}, {"reuse_port": True}])
async def test_a_process_sharing_the_port_listens_once_connected(
    database_url: str, ingest_amqp_url: str, sharing: dict[str, object]
) -> None:
    client = await serve(create_app(ingest_settings(database_url, ingest_amqp_url, **sharing)))
    try:
        # The very first answer: no moment in which this listener is not ready.
        assert (await readiness(client))["status"] == "ready"
    finally:
        await client.close()


async def test_it_listens_after_the_wait_when_the_broker_does_not_answer(
    database_url: str,
) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = ingest_settings(database_url, closed, processes=2, shared_port_ready_wait=1.0)
    began = time.monotonic()
    with capture_logs() as logs:
        client = await serve(create_app(settings))
    try:
        assert time.monotonic() - began >= 1.0
        body = await readiness(client)
        assert body["status"] != "ready", body
        warning = next(
            e for e in logs if e["event"] == "listening before the database and broker answer"
        )
        assert warning["broker"] is False and warning["database"] is True
    finally:
        await client.close()


async def test_one_process_alone_listens_at_once(database_url: str) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = ingest_settings(database_url, closed, shared_port_ready_wait=30.0)
    began = time.monotonic()
    client = await serve(create_app(settings))
    try:
        assert time.monotonic() - began < 10
        assert (await readiness(client))["status"] != "ready"
    finally:
        await client.close()
