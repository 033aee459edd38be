"""Graceful shutdown under load: clients push through two ingest-api replicas (moving to the other
one when a replica stops answering, as the gateway does) while two reconcilers consume; one
reconciler and then one ingest-api get SIGTERM, as `docker compose stop`, a scale-down or a
Kubernetes rollout sends it. Each exits 0 well within its grace period, and every push answered
202 ends applied, its asset stored."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support.events import asset_doc
from tests.support.infra import Infra, create_database, drop_database, unique_name
from tests.support.system import ServiceProcess, System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

CLIENTS = 8
# docker-compose.yml's stop_grace_period (30 s) and the manifests' terminationGracePeriodSeconds
# leave room for the HTTP drain (10 s) and the consumer drain (10 s); an exit takes far less.
GRACE_SECONDS = 30


@dataclass
class Load:
    """Clients pushing a new asset each time, round robin over the ingest replicas that answer."""

    replicas: list[ServiceProcess]
    token: str
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> asset id
    refused: int = 0  # no answer, or 503: the client moves on (nothing was accepted)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, http: aiohttp.ClientSession, number: int) -> None:
        t = datetime.now(UTC) - timedelta(minutes=1)
        sent = 0
        while not self.stopping.is_set():
            replica = self.replicas[(number + sent) % len(self.replicas)]
            doc = asset_doc(f"load-{number}-{sent}", t)
            sent += 1
            try:
                async with http.put(
                    f"{replica.url}/v1/assets/{doc['id']}",
                    json=doc,
                    headers={"Authorization": f"Bearer {self.token}"},
                ) as response:
                    if response.status == 202:
                        self.accepted[(await response.json())["event_id"]] = doc["id"]
                        continue
                    assert response.status == 503, await response.text()
            except aiohttp.ClientError:
                pass  # stopping or stopped: the push was not accepted; try the next replica
            self.refused += 1
            await asyncio.sleep(0.05)

    async def until_accepted(self, count: int, timeout: float = 120) -> None:
        target = len(self.accepted) + count

        async def progress() -> int:
            return len(self.accepted)

        await eventually(progress, lambda n: n >= target, timeout=timeout, what="accepted pushes")


@pytest.fixture
async def system(
    test_infra: Infra, template_database: str, tmp_path: Path
) -> AsyncIterator[System]:
    """A system of this test's own (it stops services the shared one needs)."""
    database, vhost = unique_name("rwasync_stop"), unique_name("rwasync_stop")
    await create_database(test_infra.postgres_admin_url, database, template=template_database)
    test_infra.rabbit.add_vhost(vhost)
    own = System(test_infra.database_url(database), test_infra.amqp_vhost_url(vhost), tmp_path)
    try:
        yield own
    finally:
        own.stop_all()
        test_infra.rabbit.delete_vhost(vhost)
        await drop_database(test_infra.postgres_admin_url, database)


def replicas(system: System, name: str, count: int) -> list[ServiceProcess]:
    started = [
        ServiceProcess(name, free_port(), system.env, system.workdir / f"{name}-{i}.log")
        for i in range(count)
    ]
    for replica in started:
        replica.start()
    for i, replica in enumerate(started):
        replica.wait()
        system.services[f"{name}-{i}"] = replica
    return started


async def terminate(replica: ServiceProcess) -> tuple[int | None, float]:
    """SIGTERM, as an orchestrator sends it; the exit code and how long the exit took."""
    began = time.monotonic()
    code = await asyncio.to_thread(replica.stop, signal.SIGTERM, GRACE_SECONDS)
    return code, time.monotonic() - began


def events(replica: ServiceProcess) -> set[str]:
    """The `event` of every JSON log line a replica wrote."""
    lines = replica.log_path.read_text().splitlines()
    return {json.loads(line)["event"] for line in lines if line.startswith("{")}


@pytest.fixture
def workers(system: System) -> Iterator[tuple[list[ServiceProcess], list[ServiceProcess]]]:
    yield replicas(system, "ingest-api", 2), replicas(system, "reconciler", 2)


async def test_sigterm_under_load_loses_no_accepted_push(
    system: System, workers: tuple[list[ServiceProcess], list[ServiceProcess]]
) -> None:
    ingest, reconcilers = workers
    _, provider = await asyncio.to_thread(
        system.cli, "provider", "create", "Stop Estates", "--json"
    )
    load = Load(list(ingest), provider["token"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        clients = [asyncio.create_task(load.client(http, n)) for n in range(CLIENTS)]
        try:
            await load.until_accepted(100)
            reconciler_exit = await terminate(reconcilers[0])
            await load.until_accepted(100)
            ingest_exit = await terminate(ingest[0])
            await load.until_accepted(100)
        finally:
            load.stopping.set()
            await asyncio.gather(*clients)

    for name, (code, took) in (("reconciler", reconciler_exit), ("ingest-api", ingest_exit)):
        assert code == 0, f"{name} exited {code} on SIGTERM:\n{system.logs()}"
        assert took < GRACE_SECONDS, f"{name} took {took:.1f} s to stop"
    # The graceful path, not a kill: the consumer stopped taking messages and drained.
    assert {"shutting down: no new requests, finishing those in flight", "stopped"} <= events(
        ingest[0]
    )
    assert {"consumer stopping", "consumer stopped", "stopped"} <= events(reconcilers[0])

    conn = await asyncpg.connect(system.database_url)
    try:

        async def undecided() -> int:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM event_receipts "
                "WHERE event_id = ANY($1::uuid[]) AND status = 'applied'",
                list(load.accepted),
            )
            return len(load.accepted) - count

        await eventually(undecided, lambda n: n == 0, timeout=120, what="every 202 applied")
        stored = await conn.fetchval(
            "SELECT count(*) FROM assets WHERE asset_id = ANY($1::text[]) AND NOT deleted",
            list(load.accepted.values()),
        )
    finally:
        await conn.close()
    assert stored == len(load.accepted)
