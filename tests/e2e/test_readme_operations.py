"""README.md's operations, as written: each `docker compose run --rm cli …` line of "Rotate a
credential", "Approve a held feed", "Replay dead letters" and "See how it is doing" is run
with the CLI that the `cli` image starts (`rwasync`), its `$VARIABLES` taken from the situation
the test sets up, against the four services as real processes; and what the line promises is
checked through the services."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from aiohttp import web

from rwasync.schema import topology
from rwasync.schema.messages import message_for
from tests.support.deployment import entrypoint, image_services, operations_commands
from tests.support.events import asset_doc, upserted
from tests.support.infra import unique_name
from tests.support.system import System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

PREFIX = "docker compose run --rm cli "


def readme_lines(*subcommands: str) -> list[str]:
    """The README's cli lines whose command starts with one of `subcommands`, in order."""
    return [
        line
        for line in operations_commands()
        if line.startswith(PREFIX) and line[len(PREFIX) :].startswith(subcommands)
    ]


def run_line(system: System, line: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The line with `docker compose run --rm cli` replaced by the cli image's entry point from
    the virtualenv, run by bash with `variables` set, as an operator's shell would."""
    (script,) = entrypoint(image_services()["cli"])
    command = shlex.join([str(Path(sys.prefix) / "bin" / script)]) + " " + line[len(PREFIX) :]
    for name in variables:
        assert f"${name}" in line or f"${{{name}}}" in line, f"{line} does not use ${name}"
    return subprocess.run(
        ["bash", "-c", command],
        env={**system.env, **variables},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def answer(done: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert done.returncode == code, f"exit {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def authenticates(http: aiohttp.ClientSession, base: str, token: str) -> int:
    async with http.get(
        f"{base}/v1/assets", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status


async def test_rotate_a_credential(system: System, http: aiohttp.ClientSession) -> None:
    _, provider = system.cli("provider", "create", unique_name("Rotating"), "--json")
    listing, rotate, revoke = readme_lines("credential ")
    base = system.url("ingest-api")

    listed = answer(run_line(system, listing, PROVIDER_ID=provider["provider_id"]))
    assert [c["key_id"] for c in listed["items"]] == [provider["key_id"]]
    rotated = answer(run_line(system, rotate, KEY_ID=provider["key_id"]))
    assert rotated["replaces"] == provider["key_id"] and rotated["old_revoked_at"]
    # Both work during the overlap.
    assert await authenticates(http, base, rotated["token"]) == 200
    assert await authenticates(http, base, provider["token"]) == 200
    answer(run_line(system, revoke, KEY_ID=provider["key_id"]))
    # The old one stops within the credential cache's 5 s; the new one goes on.
    await eventually(
        lambda: authenticates(http, base, provider["token"]), lambda s: s == 401, timeout=15
    )
    assert await authenticates(http, base, rotated["token"]) == 200


async def test_approve_a_held_feed(system: System, http: aiohttp.ClientSession) -> None:
    _, provider = system.cli("provider", "create", unique_name("Held"), "--json")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    snapshot: dict[str, Any] = {
        "timestamp": t.isoformat(),
        "total_assets": 3,
        "assets": [asset_doc(f"held-{i}", t - timedelta(minutes=1)) for i in range(3)],
    }

    async def feed(_: web.Request) -> web.Response:
        return web.json_response(snapshot)

    app = web.Application()
    app.router.add_get("/feed.json", feed)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    trigger, runs, approve = readme_lines("feed trigger", "feed runs", "feed approve")
    try:
        _, added = system.cli(
            "feed", "add", provider["provider_id"], f"http://127.0.0.1:{port}/feed.json", "--json"
        )
        feed_id = added["feed_id"]
        # In threads: the feed is served by this test's event loop.
        first = await asyncio.to_thread(run_line, system, trigger, FEED_ID=feed_id)
        assert answer(first)["counts"]["created"] == 3
        # The provider's next feed is empty: held, nothing deleted, exit 3.
        snapshot = {"timestamp": (t + timedelta(minutes=5)).isoformat(), "total_assets": 0}
        snapshot["assets"] = []
        held = answer(await asyncio.to_thread(run_line, system, trigger, FEED_ID=feed_id), 3)
        assert (held["status"], held["reason_code"]) == ("held", "empty_feed")
        listed = answer(run_line(system, runs, FEED_ID=feed_id))
        assert [r["status"] for r in listed["items"]] == ["held", "ok"]
        run_id = listed["items"][0]["run_id"]
        approved = answer(await asyncio.to_thread(run_line, system, approve, RUN_ID=run_id))
    finally:
        await runner.cleanup()
    assert approved["run_id"] == run_id and approved["status"] == "ok"
    assert approved["counts"]["deleted"] == 3

    async def listed_assets() -> int:
        async with http.get(
            f"{system.url('ingest-api')}/v1/assets",
            headers={"Authorization": f"Bearer {provider['token']}"},
        ) as response:
            return len((await response.json())["items"])

    await eventually(listed_assets, lambda n: n == 0, timeout=60)


async def test_replay_dead_letters_and_see_the_status(system: System) -> None:
    """An event the reconciler can never apply (its document names another asset) is
    dead-lettered; the README's lines list it, replay it (it is dead-lettered again, with the
    same reason: the cause was not fixed) and `status` shows it among the problems."""
    poison = upserted(unique_name("prv_poison"), "poison-1", datetime.now(UTC))
    poison = poison.model_copy(
        update={"payload": poison.payload.model_copy(update={"document": {"id": "other"}})}
    )
    connection = await aio_pika.connect(system.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.ASSETS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                message_for([poison]).model_dump_json().encode(),
                message_id=str(poison.event_id),
            ),
            routing_key="asset.upserted",
        )
    finally:
        await connection.close()
    listing, replay = readme_lines("dlq ")

    def ours(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items if str(poison.event_id) in i["event_ids"]]

    async def dead() -> list[dict[str, Any]]:
        return ours(answer(await asyncio.to_thread(run_line, system, listing))["items"])

    (item,) = await eventually(dead, lambda found: len(found) == 1, timeout=60)
    assert "document id differs" in item["reason"]
    replayed = answer(await asyncio.to_thread(run_line, system, replay))
    assert replayed["replayed"] >= 1
    (again,) = await eventually(
        dead, lambda found: len(found) == 1 and found[0] != item, timeout=60
    )
    assert "document id differs" in again["reason"]

    (status,) = readme_lines("status")
    done = await asyncio.to_thread(run_line, system, status)
    assert done.returncode == 0, done.stderr
    for text in ("Queues (from amqp)", topology.RECONCILER_QUEUE, "dead letters", "problems"):
        assert text in done.stdout, text
