"""Traces through the broker and what the logs say, on the four services as real processes
logging JSON: a caller's `traceparent` is found in ingest-api's line for the request, in the
reconciler's or pricing's line for the message, and on the receipt; a feed run's trace (its run
id) in the reconciler's line; each line names provider, asset and event. No credential, provider
or feed, ever appears in any process's output."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rwasync.feeds.auth import FeedSecrets
from tests.support.events import asset_doc
from tests.support.infra import Infra, create_database, drop_database, unique_name
from tests.support.system import CLI, System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

FEED_TOKEN = "feed-token-" + "7c1d" * 10  # the provider's secret for its feed


@pytest.fixture(scope="module")
def traced(
    test_infra: Infra, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    db_name, vhost = unique_name("rwasync_trace"), unique_name("rwasync_trace")
    asyncio.run(create_database(test_infra.postgres_admin_url, db_name, template=template_database))
    test_infra.rabbit.add_vhost(vhost)
    running = System(
        test_infra.database_url(db_name),
        test_infra.amqp_vhost_url(vhost),
        Path(tmp_path_factory.mktemp("traced")),
        extra_env={
            "RWASYNC_FEED_SECRETS_KEY": FeedSecrets.new_key(),
            "RWASYNC_LOG_LEVEL": "DEBUG",  # the most a process would ever say
            "FEED_TOKEN": FEED_TOKEN,
        },
    )
    try:
        running.start()
        yield running
    finally:
        running.stop_all()
        test_infra.rabbit.delete_vhost(vhost)
        asyncio.run(drop_database(test_infra.postgres_admin_url, db_name))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def log_lines(system: System, service: str) -> list[dict[str, Any]]:
    lines = []
    for text in system.services[service].log_path.read_text().splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def lines_with(system: System, service: str, **fields: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(system, service)
        if all(line.get(k) == v for k, v in fields.items())
    ]


def cli(system: System, *args: str) -> tuple[dict[str, Any], str]:
    """The CLI's JSON answer and its stderr (checked for secrets like the services' logs)."""
    done = subprocess.run([*CLI, *args], env=system.env, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer, done.stderr.decode()


async def test_a_trace_and_the_ids_follow_a_push_and_a_feed_and_no_secret_is_logged(
    traced: System, http: aiohttp.ClientSession
) -> None:
    provider, cli_output = cli(traced, "provider", "create", "Traced Estates", "--json")
    bearer = {"Authorization": f"Bearer {provider['token']}"}
    provider_id = provider["provider_id"]
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    # A push with the caller's trace context.
    trace = "5c1a0e2f9b7d4c3a8e6f1d2b3c4a5e6f"
    doc = asset_doc("traced-1", t)
    async with http.put(
        f"{traced.url('ingest-api')}/v1/assets/traced-1",
        json=doc,
        headers={**bearer, "traceparent": f"00-{trace}-1a2b3c4d5e6f7a8b-01"},
    ) as response:
        assert response.status == 202, await response.text()
        event_id = (await response.json())["event_id"]

    async def receipt() -> dict[str, Any]:
        async with http.get(
            f"{traced.url('ingest-api')}/v1/events/{event_id}", headers=bearer
        ) as r:
            body: dict[str, Any] = await r.json()
            return body

    decided = await eventually(receipt, lambda r: r.get("status") == "applied", timeout=60)
    assert decided["trace_id"] == trace

    # A price with another trace, through pricing.
    price_trace = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    async with http.put(
        f"{traced.url('ingest-api')}/v1/assets/traced-1/price",
        json={"amount": "10.5", "currency": "USD", "as_of": t.isoformat()},
        headers={**bearer, "traceparent": f"00-{price_trace}-0102030405060708-01"},
    ) as response:
        assert response.status == 202, await response.text()
        price_event = (await response.json())["event_id"]

    # A feed run fetching with the provider's feed token.
    async def feed(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {FEED_TOKEN}":
            return web.Response(status=401)
        asset = asset_doc("fed-1", t)
        return web.json_response({"timestamp": t.isoformat(), "total_assets": 1, "assets": [asset]})

    app = web.Application()
    app.router.add_get("/feed.json", feed)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        added, added_output = cli(
            traced, "feed", "add", provider_id, f"http://127.0.0.1:{port}/feed.json",
            "--auth", "bearer", "--auth-secret-env", "FEED_TOKEN", "--json",
        )  # fmt: skip
        # In a thread: the feed this run fetches is served by this test's event loop.
        run, run_output = await asyncio.to_thread(
            cli, traced, "feed", "trigger", added["feed_id"], "--wait", "--json"
        )
    finally:
        await runner.cleanup()
    assert run["status"] == "ok", run
    assert run["counts"]["created"] == 1

    # ingest-api: the request's line carries the caller's trace and whose, which, what.
    (request_line,) = lines_with(
        traced, "ingest-api", trace_id=trace, route="/v1/assets/{id}", method="PUT"
    )
    assert request_line["provider_id"] == provider_id
    assert request_line["asset_id"] == "traced-1"
    assert request_line["event_id"] == event_id
    # The reconciler's line for the message: the same trace, through the broker.
    (applied,) = lines_with(traced, "reconciler", trace_id=trace, event="message handled")
    assert (applied["provider_id"], applied["asset_id"], applied["event_id"]) == (
        provider_id,
        "traced-1",
        event_id,
    )
    # pricing's, for the tick.
    ticked = await eventually(
        lambda: asyncio.sleep(0, lines_with(traced, "pricing", trace_id=price_trace)),
        lambda lines: any(line.get("event") == "message handled" for line in lines),
        timeout=60,
    )
    (tick_line,) = [line for line in ticked if line.get("event") == "message handled"]
    assert (tick_line["asset_id"], tick_line["event_id"]) == ("traced-1", price_event)
    # The feed run: its run id is the trace, in the poller's lines and the reconciler's.
    assert lines_with(traced, "feed-poller", trace_id=run["run_id"], event="feed run finished")
    # Its one message carries the creation and the deletion of traced-1 (missing from the
    # feed): the message's line names the provider, a line per event (DEBUG) each asset.
    fed = await eventually(
        lambda: asyncio.sleep(0, lines_with(traced, "reconciler", trace_id=run["run_id"])),
        lambda lines: any(line.get("event") == "event handled" for line in lines),
        timeout=60,
    )
    (batch,) = [line for line in fed if line.get("event") == "message handled"]
    assert batch["provider_id"] == provider_id and batch["events"] == 2
    handled = {line["asset_id"]: line for line in fed if line.get("event") == "event handled"}
    assert set(handled) == {"fed-1", "traced-1"}
    assert all(line["provider_id"] == provider_id and line["event_id"] for line in handled.values())

    # No credential anywhere: not the provider's token or secret, not the feed's token, not an
    # Authorization header's value.
    outputs = {name: service.log_path.read_text() for name, service in traced.services.items()} | {
        "cli": cli_output + added_output + run_output
    }
    for name, text in outputs.items():
        assert text.strip() or name == "cli", f"{name} logged nothing"
        for secret in (provider["token"], provider["secret"], FEED_TOKEN, "Bearer "):
            assert secret not in text, f"{name} logged a credential"
