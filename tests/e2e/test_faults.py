"""Faults: a service whose broker or database goes away keeps serving /healthz, reports not
ready, and recovers by itself when it returns; nothing accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.e2e.test_flows import bearer, get_asset, put_asset, receipt
from tests.support.events import asset_doc
from tests.support.system import ServiceProcess, System, free_port
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import eventually, get_status

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def reconciler_with(system: System, **env: str) -> AsyncIterator[ServiceProcess]:
    """The shared reconciler swapped for one with other settings, and swapped back after."""
    shared = system.services["reconciler"]
    shared.stop()
    log = system.workdir / f"reconciler-{'-'.join(sorted(env)).lower()}.log"
    reconciler = ServiceProcess("reconciler", free_port(), {**system.env, **env}, log)
    reconciler.start()
    try:
        await asyncio.to_thread(reconciler.wait)
        yield reconciler
    finally:
        reconciler.stop()
        shared.start()
        await asyncio.to_thread(shared.wait)


@pytest.fixture
async def broker_proxy(system: System) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy.in_front_of(system.amqp_url)
    yield proxy
    await proxy.cut()


@pytest.fixture
async def database_proxy(system: System) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy.in_front_of(system.database_url)
    yield proxy
    await proxy.cut()


async def test_ingest_recovers_when_the_broker_returns(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    broker_proxy: TcpProxy,
) -> None:
    env = {**system.env, "RWASYNC_AMQP_URL": broker_proxy.through(system.amqp_url)}
    ingest = ServiceProcess("ingest-api", free_port(), env, system.workdir / "ingest-proxied.log")
    ingest.start()
    try:
        await asyncio.to_thread(ingest.wait)  # the proxy runs on this loop: keep it free
        await broker_proxy.cut()
        await eventually(lambda: get_status(http, ingest.url + "/readyz"), lambda s: s == 503)
        assert await get_status(http, ingest.url + "/healthz") == 200
        doc = asset_doc("through-proxy", datetime.now(UTC) - timedelta(seconds=5))
        async with http.put(
            f"{ingest.url}/v1/assets/{doc['id']}", json=doc, headers=bearer(provider)
        ) as response:
            assert response.status == 503
            assert "Retry-After" in response.headers

        await broker_proxy.restore()
        await eventually(
            lambda: get_status(http, ingest.url + "/readyz"), lambda s: s == 200, timeout=30
        )
        async with http.put(
            f"{ingest.url}/v1/assets/{doc['id']}", json=doc, headers=bearer(provider)
        ) as response:
            assert response.status == 202
            event_id = (await response.json())["event_id"]
        assert (await receipt(http, system, provider, event_id))["status"] == "applied"
    finally:
        ingest.stop()


async def _outage_loses_nothing(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    proxy: TcpProxy,
    reconciler: ServiceProcess,
    prefix: str,
) -> None:
    """Cut the reconciler's link, accept pushes meanwhile, restore it: every push is applied."""
    await proxy.cut()
    await eventually(lambda: get_status(http, reconciler.url + "/readyz"), lambda s: s == 503)
    assert await get_status(http, reconciler.url + "/healthz") == 200
    t = datetime.now(UTC) - timedelta(minutes=1)
    # Accepted by the shared ingest-api while this reconciler cannot do its work.
    accepted = [
        await put_asset(http, system, provider, asset_doc(f"{prefix}-{i}", t)) for i in range(10)
    ]
    await proxy.restore()
    await eventually(
        lambda: get_status(http, reconciler.url + "/readyz"), lambda s: s == 200, timeout=30
    )
    for body in accepted:
        decided = await receipt(http, system, provider, body["event_id"])
        assert decided["status"] == "applied"
    assert (await get_asset(http, system, provider, f"{prefix}-9"))[0] == 200


async def test_reconciler_waits_out_a_database_outage_and_loses_nothing(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    database_proxy: TcpProxy,
) -> None:
    url = database_proxy.through(system.database_url)
    async with reconciler_with(system, RWASYNC_DATABASE_URL=url) as reconciler:
        await _outage_loses_nothing(system, http, provider, database_proxy, reconciler, "outage")


async def test_reconciler_resumes_consuming_after_losing_the_broker(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    broker_proxy: TcpProxy,
) -> None:
    url = broker_proxy.through(system.amqp_url)
    async with reconciler_with(system, RWASYNC_AMQP_URL=url) as reconciler:
        await _outage_loses_nothing(system, http, provider, broker_proxy, reconciler, "cut")


@pytest.mark.parametrize("name", ["ingest-api", "feed-poller", "reconciler", "pricing"])
async def test_every_service_starts_with_its_broker_and_database_away(
    system: System, http: aiohttp.ClientSession, name: str
) -> None:
    env = {
        **system.env,
        "RWASYNC_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/rwasync",
        "RWASYNC_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
    }
    service = ServiceProcess(name, free_port(), env, system.workdir / f"{name}-alone.log")
    service.start()
    try:
        await asyncio.to_thread(service.wait, "/healthz")
        async with http.get(service.url + "/readyz") as response:
            assert response.status == 503
            checks = (await response.json())["checks"]
        assert checks["database"] is False and checks["broker"] is False
        async with http.get(service.url + "/metrics") as response:
            assert response.status == 200
            assert "rwasync_http_requests_total" in await response.text()
    finally:
        assert service.stop() == 0  # SIGTERM: a clean exit even with nothing connected
