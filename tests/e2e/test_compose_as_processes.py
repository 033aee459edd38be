"""docker-compose.yml, run as local processes: the migrate job's command migrates a database of
its own, every service starts twice from its own command and environment and passes its own health
check, and an asset pushed through the gateway is applied by the reconciler and read back through
it; a price the same way. A wrong setting name, command or port in the compose file fails here."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.compose_local import LocalCompose
from tests.support.deployment import (
    caddy,
    dashboard_queries,
    operations_commands,
    prepare_project,
    queried_metrics,
    resolved_compose,
)
from tests.support.events import asset_doc
from tests.support.infra import Infra, drop_database, unique_name
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

SCALED = ("ingest-api", "feed-poller", "reconciler", "pricing")
REPLICAS = 2


@pytest.fixture(scope="module")
def deployment(
    test_infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCompose]:
    workdir = Path(tmp_path_factory.mktemp("compose"))
    # What README.md, "Operations", tells an operator to do: copy the example, add the passwords.
    prepare_project(workdir / "project")
    resolved = resolved_compose(workdir / "project")
    database = unique_name("rwasync_compose")  # not created: the migrate job creates it
    vhost = unique_name("rwasync_compose")
    test_infra.rabbit.add_vhost(vhost)
    local = LocalCompose(
        resolved, test_infra.database_url(database), test_infra.amqp_vhost_url(vhost), workdir
    )
    try:
        yield local
    finally:
        local.stop()
        test_infra.rabbit.delete_vhost(vhost)
        asyncio.run(drop_database(test_infra.postgres_admin_url, database))


@pytest.fixture(scope="module")
def gateway(deployment: LocalCompose) -> Iterator[str]:
    migrated = deployment.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    for name in SCALED:
        deployment.start(name, REPLICAS)
    try:
        for name in SCALED:
            deployment.wait_healthy(name)
        yield deployment.start_gateway(caddy())
    except BaseException:
        print(deployment.logs())
        raise


def cli(deployment: LocalCompose, *args: str) -> dict[str, Any]:
    done = deployment.run("cli", *args)
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    return created


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def requests_served(http: aiohttp.ClientSession, url: str, method: str, status: int) -> int:
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "rwasync_http_requests_total"
            and sample.labels.get("method") == method
            and sample.labels.get("status") == str(status)
        )
    )


async def test_an_asset_pushed_through_the_gateway_is_applied_and_read_back(
    deployment: LocalCompose, gateway: str, http: aiohttp.ClientSession
) -> None:
    provider = cli(deployment, "provider", "create", "Compose Estates", "--json")
    headers = {"Authorization": f"Bearer {provider['token']}"}
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    accepted = []
    for i in range(6):
        doc = asset_doc(f"compose-{i}", t, name=f"{i} Compose Street")
        async with http.put(f"{gateway}/v1/assets/{doc['id']}", json=doc, headers=headers) as r:
            assert r.status == 202, await r.text()
            accepted.append((await r.json())["event_id"])

    async def receipt(event_id: str) -> str:
        async with http.get(f"{gateway}/v1/events/{event_id}", headers=headers) as r:
            return str((await r.json()).get("status")) if r.status == 200 else ""

    for event_id in accepted:
        await eventually(lambda e=event_id: receipt(e), lambda s: s == "applied", timeout=60)
    async with http.get(f"{gateway}/v1/assets/compose-5", headers=headers) as r:
        assert r.status == 200
        assert (await r.json())["name"] == "5 Compose Street"
    # The gateway spread the pushes over both ingest-api replicas.
    for replica in deployment.replicas["ingest-api"]:
        assert await requests_served(http, replica.url, "PUT", 202) > 0, replica.name


async def test_a_price_pushed_through_the_gateway_is_read_by_an_investor_through_it(
    deployment: LocalCompose, gateway: str, http: aiohttp.ClientSession
) -> None:
    provider = cli(deployment, "provider", "create", "Compose Prices", "--json")
    reader = cli(deployment, "reader", "create", "Compose Investor", "--json")
    as_of = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    tick = {"amount": "52.10", "currency": "USD", "as_of": as_of}
    async with http.put(
        f"{gateway}/v1/assets/priced-1/price",
        json=tick,
        headers={"Authorization": f"Bearer {provider['token']}"},
    ) as r:
        assert r.status == 202, await r.text()

    async def read() -> tuple[int, dict[str, Any]]:
        async with http.get(
            f"{gateway}/v1/prices/{provider['provider_id']}/priced-1",
            headers={"Authorization": f"Bearer {reader['token']}"},
        ) as r:
            return r.status, await r.json(content_type=None)

    _, price = await eventually(read, lambda got: got[0] == 200, timeout=60)
    assert price["amount"] == "52.1"


async def test_the_readmes_commands_push_and_read_an_asset_through_the_gateway(
    deployment: LocalCompose, gateway: str
) -> None:
    """README.md's `docker compose run --rm cli` and `curl` lines, as written: the CLI through
    the cli service's command and environment, curl against the gateway (on the host port the
    compose file publishes)."""
    published = deployment.service("gateway")["ports"][0]["published"]
    commands = operations_commands()
    (create,) = [c for c in commands if c.startswith("docker compose run --rm cli provider ")]
    token = cli(deployment, *shlex.split(create)[5:])["token"]
    put, get = [c for c in commands if c.startswith("curl ")]
    assert f"localhost:{published}/" in put and f"localhost:{published}/" in get

    def curl(command: str) -> dict[str, Any]:
        local = command.replace(f"localhost:{published}", gateway)
        done = subprocess.run(
            ["bash", "-c", local],
            env={"PATH": "/usr/bin:/bin", "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    assert curl(put)["status"] == "accepted"

    async def read() -> dict[str, Any]:
        return await asyncio.to_thread(curl, get)

    stored = await eventually(read, lambda body: "_meta" in body, timeout=60)
    assert stored["id"] == "det-1" and stored["name"] == "1 Main St"


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """(names a /metrics page declares, names it has samples for): a histogram declares its
    `_bucket`, `_sum` and `_count`, a labelled metric with no sample yet is declared only."""
    declared, sampled = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            declared.add(name)
            if kind == "histogram":
                declared.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            sampled.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return declared, sampled


async def test_every_metric_the_dashboard_queries_is_exported_by_the_running_services(
    deployment: LocalCompose, gateway: str, http: aiohttp.ClientSession
) -> None:
    """The Grafana dashboard's queries against the real services' /metrics, after traffic of its
    own: an asset and a price pushed through the gateway and decided."""
    provider = cli(deployment, "provider", "create", "Compose Metrics", "--json")
    headers = {"Authorization": f"Bearer {provider['token']}"}
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    pushed = []
    for path, body in (
        ("/v1/assets/metered-1", asset_doc("metered-1", t)),
        (
            "/v1/assets/metered-1/price",
            {"amount": "9.5", "currency": "USD", "as_of": t.isoformat()},
        ),
    ):
        async with http.put(gateway + path, json=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            pushed.append((await r.json())["event_id"])

    async def decided(event_id: str) -> str:
        async with http.get(f"{gateway}/v1/events/{event_id}", headers=headers) as r:
            return str((await r.json()).get("status")) if r.status == 200 else ""

    for event_id in pushed:
        await eventually(lambda e=event_id: decided(e), lambda s: s == "applied", timeout=60)
    declared: set[str] = set()
    sampled: set[str] = set()
    for name in SCALED:
        for replica in deployment.replicas[name]:
            async with http.get(replica.url + "/metrics") as response:
                assert response.status == 200
                page_declared, page_sampled = exported_names(await response.text())
            declared |= page_declared
            sampled |= page_sampled
    queries = dashboard_queries()
    for title, expr in queries:
        for metric in queried_metrics(expr):
            assert metric in declared, f"{title}: no service exports {metric}"
    # What the traffic above must have produced, on some replica.
    for metric in (
        "rwasync_http_requests_total",
        "rwasync_http_request_seconds_bucket",
        "rwasync_messages_published_total",
        "rwasync_messages_consumed_total",
        "rwasync_events_decided_total",
        "rwasync_message_events_bucket",
        "rwasync_apply_seconds_bucket",
        "rwasync_event_lag_seconds_bucket",
        "rwasync_price_lag_seconds_bucket",
        "rwasync_queue_messages",
        "rwasync_queue_consumers",
    ):
        assert metric in sampled, f"{metric} has no sample after the traffic"
