"""End to end through the real services: push, read back, versions, prices, feeds, faults."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.events import asset_doc
from tests.support.system import System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def bearer(credentials: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['token']}"}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def put_asset(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], doc: dict[str, Any]
) -> dict[str, Any]:
    async with http.put(
        f"{system.url('ingest-api')}/v1/assets/{doc['id']}", json=doc, headers=bearer(provider)
    ) as response:
        body = await response.json(content_type=None)
        assert response.status == 202, body
        return dict(body)


async def receipt(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], event_id: str
) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        async with http.get(
            f"{system.url('ingest-api')}/v1/events/{event_id}", headers=bearer(provider)
        ) as response:
            return dict(await response.json(content_type=None)) if response.status == 200 else {}

    return await eventually(
        probe, lambda r: r.get("status") not in (None, "accepted"), what=f"receipt of {event_id}"
    )


async def get_asset(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], asset_id: str
) -> tuple[int, dict[str, Any]]:
    async with http.get(
        f"{system.url('ingest-api')}/v1/assets/{asset_id}", headers=bearer(provider)
    ) as response:
        return response.status, dict(await response.json(content_type=None))


async def test_push_read_back_and_stale_version(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    t = now() - timedelta(minutes=1)
    newer = asset_doc(
        "det-1201", t, description="renovated kitchen", price={"amount": "52.10", "currency": "USD"}
    )
    accepted = await put_asset(http, system, provider, newer)
    assert (await receipt(http, system, provider, accepted["event_id"]))["status"] == "applied"
    status, stored = await get_asset(http, system, provider, "det-1201")
    assert status == 200
    assert stored["description"] == "renovated kitchen"
    assert stored["price"] == {"amount": "52.1", "currency": "USD"}
    assert stored["_meta"]["deleted"] is False
    assert len(stored["_meta"]["content_hash"]) == 64

    older = asset_doc("det-1201", t - timedelta(hours=1), description="before renovation")
    stale = await put_asset(http, system, provider, older)
    decided = await receipt(http, system, provider, stale["event_id"])
    assert decided["status"] == "stale_ignored" and decided["reason"]
    status, stored = await get_asset(http, system, provider, "det-1201")
    assert stored["description"] == "renovated kitchen"


async def test_tenants_are_walled(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    accepted = await put_asset(http, system, provider, asset_doc("walled-1", now()))
    await receipt(http, system, provider, accepted["event_id"])
    _, other = system.cli("provider", "create", "Other Estates", "--json")
    status, problem = await get_asset(http, system, other, "walled-1")
    assert status == 404 and problem["status"] == 404
    async with http.get(
        f"{system.url('ingest-api')}/v1/events/{accepted['event_id']}", headers=bearer(other)
    ) as response:
        assert response.status == 404


async def test_price_push_is_read_by_an_investor(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], reader: dict[str, str]
) -> None:
    as_of = now()
    async with http.put(
        f"{system.url('ingest-api')}/v1/assets/det-77/price",
        json={"amount": "49.75", "currency": "USD", "as_of": as_of.isoformat()},
        headers=bearer(provider),
    ) as response:
        assert response.status == 202
        event_id = (await response.json())["event_id"]
    decided = await receipt(http, system, provider, event_id)
    assert decided["status"] == "applied" and decided["latest"] is True

    url = f"{system.url('pricing')}/v1/prices/{provider['provider_id']}/det-77"
    async with http.get(url, headers=bearer(reader)) as response:
        assert response.status == 200
        body = await response.json()
        etag = response.headers["ETag"]
    assert body["amount"] == "49.75" and body["currency"] == "USD" and body["stale"] is False
    assert body["as_of"] == as_of.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    async with http.get(url, headers={**bearer(reader), "If-None-Match": etag}) as response:
        assert response.status == 304
    # Provider credentials are not reader tokens.
    async with http.get(url, headers=bearer(provider)) as response:
        assert response.status == 401
        assert response.headers["Content-Type"].startswith("application/problem+json")


class FeedServer:
    """A provider's feed host on 127.0.0.1 whose snapshot the test replaces between runs."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.json"

    def snapshot(self, timestamp: datetime, assets: list[dict[str, Any]]) -> None:
        self.body = {
            "timestamp": timestamp.isoformat(),
            "total_assets": len(assets),
            "assets": assets,
        }

    async def start(self) -> None:
        async def feed(_: web.Request) -> web.Response:
            return web.json_response(self.body)

        app = web.Application()
        app.router.add_get("/feed.json", feed)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def trigger(system: System, feed_id: str) -> tuple[int, dict[str, Any]]:
    # In a thread: the feed server this run fetches from is served by this test's event loop.
    code, run = await asyncio.to_thread(
        system.cli, "feed", "trigger", feed_id, "--wait", "--json", check=False
    )
    return code, dict(run)


async def test_feed_creates_deletes_missing_and_keeps_a_later_push(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    feed_server: FeedServer,
) -> None:
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"feed-{i}", t0) for i in range(6)]
    feed_server.snapshot(t0 + timedelta(minutes=1), assets)
    _, feed = system.cli(
        "feed", "add", provider["provider_id"], feed_server.url, "--format", "json", "--json"
    )

    code, run = await trigger(system, feed["feed_id"])
    assert code == 0, run
    assert run["status"] == "ok"
    assert run["counts"]["created"] == 6 and run["counts"]["deleted"] == 0

    async def applied_count() -> int:
        statuses = [(await get_asset(http, system, provider, a["id"]))[0] for a in assets]
        return statuses.count(200)

    await eventually(applied_count, lambda n: n == 6, what="feed assets applied")

    # The second snapshot was taken before this push, and does not list the pushed asset.
    second_snapshot = now() - timedelta(seconds=30)
    pushed = await put_asset(
        http, system, provider, asset_doc("pushed-1", now() - timedelta(seconds=5))
    )
    await receipt(http, system, provider, pushed["event_id"])
    feed_server.snapshot(second_snapshot, assets[1:])  # feed-0 is gone

    code, run = await trigger(system, feed["feed_id"])
    assert code == 0 and run["status"] == "ok", run
    assert run["counts"]["deleted"] == 1 and run["counts"]["unchanged"] == 5

    await eventually(
        lambda: get_asset(http, system, provider, "feed-0"),
        lambda r: r[0] == 404,
        what="feed-0 deleted",
    )
    assert (await get_asset(http, system, provider, "pushed-1"))[0] == 200
    assert (await get_asset(http, system, provider, "feed-1"))[0] == 200


async def test_empty_feed_is_held_and_deletes_nothing(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    feed_server: FeedServer,
) -> None:
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"keep-{i}", t0) for i in range(3)]
    feed_server.snapshot(t0, assets)
    _, feed = system.cli("feed", "add", provider["provider_id"], feed_server.url, "--json")
    assert (await trigger(system, feed["feed_id"]))[0] == 0
    await eventually(
        lambda: get_asset(http, system, provider, "keep-2"), lambda r: r[0] == 200, what="applied"
    )

    feed_server.snapshot(now(), [])
    code, run = await trigger(system, feed["feed_id"])
    assert code == 3, run
    assert run["status"] == "held" and run["reason_code"] == "empty_feed"
    await asyncio.sleep(1)
    for asset in assets:
        assert (await get_asset(http, system, provider, asset["id"]))[0] == 200
    _, runs = system.cli("feed", "runs", feed["feed_id"], "--json")
    assert [r["status"] for r in runs["items"]] == ["held", "ok"]


async def test_broker_unreachable_gives_503_and_not_ready(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    lonely = System(
        system.database_url,
        "amqp://guest:guest@127.0.0.1:1/",
        system.workdir / "lonely",
    )
    (system.workdir / "lonely").mkdir(exist_ok=True)
    lonely.services["ingest-api"] = type(system.services["ingest-api"])(
        "ingest-api", free_port(), lonely.env, lonely.workdir / "ingest-api.log"
    )
    service = lonely.services["ingest-api"]
    service.start()
    try:
        service.wait("/healthz")

        async def checks() -> dict[str, bool]:
            async with http.get(service.url + "/readyz") as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"  # as every 503 (operator trial)
                return dict((await response.json())["checks"])

        # Wait for the database, so that the 503 below can only come from the broker.
        ready = await eventually(checks, lambda c: c["database"], what="database connected")
        assert ready["broker"] is False
        doc = asset_doc("never-1", now())
        async with http.put(
            f"{service.url}/v1/assets/never-1", json=doc, headers=bearer(provider)
        ) as response:
            assert response.status == 503
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        service.stop()


async def test_reconciler_restart_loses_no_queued_event(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    reconciler = system.services["reconciler"]
    reconciler.stop(signal.SIGKILL)
    t = now() - timedelta(minutes=1)
    accepted = await asyncio.gather(
        *(put_asset(http, system, provider, asset_doc(f"queued-{i}", t)) for i in range(40))
    )
    reconciler.start()
    reconciler.wait()
    for body in accepted:
        assert (await receipt(http, system, provider, body["event_id"]))["status"] == "applied"
    for i in range(40):
        assert (await get_asset(http, system, provider, f"queued-{i}"))[0] == 200
