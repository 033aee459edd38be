"""Fault scenarios under the soak's load (singles and batches of assets and prices), each against
servers of its own so it may kill them: the broker node killed and restarted, its memory and disk
alarms, Postgres restarted and killed, Postgres lock and statement timeouts while another session
holds the locks the consumers need. Each ends in the ledger's verdict (tests/e2e/scenarios.py)
and prints a `FIGURES` line for docs/reliability.md. Slow: `make test-faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from yarl import URL

from rwasync.platform.db import LockSpace, lock_stripes
from rwasync.reconciler.apply import ASSET_LOCK_STRIPES
from rwasync.store.prices import lock_assets as price_locks
from tests.e2e.scenarios import Faulting, people_of, ready, run_scenario, scenario_system
from tests.e2e.test_soak import POOL
from tests.support.infra import Infra
from tests.support.private_servers import PrivatePostgres, PrivateRabbit, private_postgres
from tests.support.private_servers import private_rabbit as private_rabbit_node
from tests.support.system import ServiceProcess, System
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_SECONDS = 45.0
# After a fault ends (the server back, the services ready), 503s are still expected this long.
GRACE = 5.0


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    with private_rabbit_node("rwscenario") as node:
        yield node


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as cluster:
        yield cluster


async def _all_ready(system: System) -> None:
    for service in system.services.values():
        await ready(service.url)


@pytest.mark.timeout(600)
async def test_broker_kill9_and_restart_under_load(
    test_infra: Infra, template_database: str, tmp_path: Path, rabbit: PrivateRabbit
) -> None:
    async with scenario_system(
        test_infra, template_database, tmp_path, amqp_url=rabbit.url()
    ) as system:
        await asyncio.to_thread(system.start)
        people = await people_of(system)
        await asyncio.sleep(12)  # the quorum queues' Raft state settles (test_cluster_failover)

        async def schedule(f: Faulting) -> None:
            for offset in (8, 28):
                await f.at(offset)
                start = time.time()
                await asyncio.to_thread(rabbit.kill9)
                f.note("broker kill -9")
                await asyncio.sleep(3)
                await asyncio.to_thread(rabbit.start)
                f.note("broker back")
                await _all_ready(system)
                f.note("services ready")
                f.fault(f"kill_{offset}s", start, time.time(), GRACE)

        result = await run_scenario("broker-kill9", system, people, schedule)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0
        assert result.extra["503_without_retry_after"] == 0


@pytest.mark.timeout(600)
@pytest.mark.parametrize("alarm", ["memory", "disk"])
async def test_broker_alarm_answers_503_and_recovers_by_itself(
    test_infra: Infra, template_database: str, tmp_path: Path, rabbit: PrivateRabbit, alarm: str
) -> None:
    raise_alarm = rabbit.memory_alarm if alarm == "memory" else rabbit.disk_alarm
    async with scenario_system(
        test_infra, template_database, tmp_path, amqp_url=rabbit.url()
    ) as system:
        await asyncio.to_thread(system.start)
        people = await people_of(system)

        async def schedule(f: Faulting) -> None:
            for offset in (8, 25):
                await f.at(offset)
                asked = time.time()
                await asyncio.to_thread(raise_alarm, True)  # rabbitmqctl takes seconds here
                start = time.time()
                f.note(f"{alarm} alarm raised")
                await asyncio.sleep(6)
                await asyncio.to_thread(raise_alarm, False)
                f.note(f"{alarm} alarm cleared")
                f.fault(f"alarm_{offset}s", start, time.time(), GRACE, since=asked)

        result = await run_scenario(f"broker-{alarm}-alarm", system, people, schedule)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0
        assert result.five_xx > 0, "the alarm never showed: nothing was refused"
        assert result.extra["503_without_retry_after"] == 0


@pytest.mark.timeout(600)
async def test_postgres_restart_and_kill9_under_load(
    test_infra: Infra,
    template_database: str,
    tmp_path: Path,
    postgres: PrivatePostgres,
    vhost_amqp_url: str,
) -> None:
    async with scenario_system(
        test_infra,
        template_database,
        tmp_path,
        amqp_url=vhost_amqp_url,
        database_admin_url=postgres.url(),
    ) as system:
        await asyncio.to_thread(system.start)
        people = await people_of(system)

        async def schedule(f: Faulting) -> None:
            await f.at(8)
            start = time.time()
            await asyncio.to_thread(postgres.restart)
            f.note("postgres restarted (fast shutdown)")
            await _all_ready(system)
            f.fault("restart", start, time.time(), GRACE)
            await f.at(25)
            start = time.time()
            await asyncio.to_thread(postgres.kill9)
            f.note("postgres kill -9")
            await asyncio.sleep(3)
            await asyncio.to_thread(postgres.start)
            f.note("postgres back")
            await _all_ready(system)
            f.fault("kill9", start, time.time(), GRACE)

        result = await run_scenario("postgres-restart", system, people, schedule)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0


@contextlib.asynccontextmanager
async def _proxies(system: System) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    """A proxy to the broker and one to the database (shared by every service behind them)."""
    made = [await TcpProxy.in_front_of(url) for url in (system.amqp_url, system.database_url)]
    try:
        yield made[0], made[1]
    finally:
        for proxy in made:
            proxy.resume()
            await proxy.cut()


async def _kill(services: list[ServiceProcess]) -> None:
    for service in services:
        await asyncio.to_thread(service.stop, signal.SIGKILL)


async def _start(services: list[ServiceProcess]) -> None:
    for service in services:
        await asyncio.to_thread(service.start)
    for service in services:
        await asyncio.to_thread(service.wait)


@pytest.mark.timeout(600)
async def test_consumers_killed_before_commit_and_after_commit_before_ack(
    test_infra: Infra, template_database: str, tmp_path: Path, vhost_amqp_url: str
) -> None:
    """The reconciler and pricing reach the broker and the database through proxies. Holding
    the broker's bytes and then SIGKILLing them kills them after commits whose acks never left;
    holding the database's bytes kills them with transactions whose COMMIT never arrived."""
    async with (
        scenario_system(test_infra, template_database, tmp_path, amqp_url=vhost_amqp_url) as system,
        _proxies(system) as (broker, database),
    ):
        system.extra_env.update(
            RWASYNC_AMQP_URL=broker.through(system.amqp_url),
            RWASYNC_DATABASE_URL=database.through(system.database_url),
        )
        await asyncio.to_thread(system.start, "reconciler", "pricing")
        for key in ("RWASYNC_AMQP_URL", "RWASYNC_DATABASE_URL"):
            del system.extra_env[key]
        await asyncio.to_thread(system.start, "ingest-api", "feed-poller")
        people = await people_of(system)
        consumers = [system.services["reconciler"], system.services["pricing"]]

        async def schedule(f: Faulting) -> None:
            for offset, proxy, what in (
                (8, broker, "after commit, before ack (broker held)"),
                (25, database, "before commit (database held)"),
            ):
                await f.at(offset)
                start = time.time()
                proxy.pause()
                await asyncio.sleep(2)
                await _kill(consumers)
                f.note(f"SIGKILL reconciler and pricing {what}")
                await proxy.cut()
                proxy.resume()
                await proxy.restore()
                await _start(consumers)
                f.note("reconciler and pricing ready again")
                f.fault(f"kill_{offset}s", start, time.time(), GRACE)

        result = await run_scenario("consumers-killed-around-commit", system, people, schedule)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0


@pytest.mark.timeout(600)
async def test_latency_and_resets_between_every_service_and_its_servers(
    test_infra: Infra, template_database: str, tmp_path: Path, vhost_amqp_url: str
) -> None:
    """Every service through the proxies, 20 ms added to every chunk both ways, and every open
    connection to the broker and the database reset every 8 s."""
    async with (
        scenario_system(test_infra, template_database, tmp_path, amqp_url=vhost_amqp_url) as system,
        _proxies(system) as (broker, database),
    ):
        system.extra_env.update(
            RWASYNC_AMQP_URL=broker.through(system.amqp_url),
            RWASYNC_DATABASE_URL=database.through(system.database_url),
        )
        await asyncio.to_thread(system.start)
        people = await people_of(system)
        broker.latency = database.latency = 0.02

        async def schedule(f: Faulting) -> None:
            for offset in range(6, int(LOAD_SECONDS) - 4, 8):
                await f.at(offset)
                start = time.time()
                which = broker if (offset // 8) % 2 == 0 else database
                resets = which.reset()
                name = "broker" if which is broker else "database"
                f.note(f"reset {resets} {name} connections")
                await _all_ready(system)
                f.fault(f"reset_{name}_{offset}s", start, time.time(), GRACE)

        result = await run_scenario("latency-and-resets", system, people, schedule)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0


@pytest.mark.timeout(900)
async def test_random_kills_of_every_service_for_two_minutes(
    test_infra: Infra, template_database: str, tmp_path: Path, vhost_amqp_url: str
) -> None:
    """For two minutes under the mixed load, a random service is SIGKILLed every few seconds and
    started again; ingest-api's own deaths show as answers that never came (retried)."""
    async with scenario_system(
        test_infra, template_database, tmp_path, amqp_url=vhost_amqp_url
    ) as system:
        await asyncio.to_thread(system.start)
        people = await people_of(system)
        rng = random.Random()

        async def schedule(f: Faulting) -> None:
            deadline = f.t0 + 110
            while time.monotonic() < deadline:
                await asyncio.sleep(rng.uniform(3, 6))
                service = system.services[rng.choice(sorted(system.services))]
                start = time.time()
                await _kill([service])
                f.note(f"SIGKILL {service.name}")
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                await _start([service])
                f.note(f"{service.name} ready again")
                f.fault(
                    f"kill_{service.name}_{int(time.monotonic() - f.t0)}s",
                    start,
                    time.time(),
                    GRACE,
                )

        result = await run_scenario("random-kills-2min", system, people, schedule, seconds=120)
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0


# The locker's rhythm: it holds the locks this long, lets go this long, over the load's first
# LOCKING_SECONDS.
HOLD_SECONDS = 3.5
RELEASE_SECONDS = 2.0
LOCKING_SECONDS = 36.0
LOCKED_ASSETS = 40


async def _hold_locks(database_url: str, provider_id: str, f: Faulting) -> list[float]:
    """Another session, again and again, takes row locks on part of the pool's assets and their
    prices, and the reconciler's and pricing's advisory-lock stripes of the same keys, holds them
    HOLD_SECONDS, commits, pauses. Returns how long each hold lasted."""
    rng = random.Random()
    held: list[float] = []
    conn = await asyncpg.connect(database_url)
    try:
        # The timeouts under test are the services'; this session waits as long as it must.
        await conn.execute("SET lock_timeout = 0; SET statement_timeout = 0")
        while time.monotonic() < f.t0 + LOCKING_SECONDS:
            keys = [(provider_id, a) for a in rng.sample(POOL, LOCKED_ASSETS)]
            ids = [a for _, a in keys]
            start = time.monotonic()
            async with conn.transaction():
                # In the services' order, stripes before rows (else the two deadlock).
                await lock_stripes(
                    conn, [f"{p}/{a}" for p, a in keys], LockSpace.ASSETS, ASSET_LOCK_STRIPES
                )
                await price_locks(conn, keys)
                for table in ("assets", "asset_prices"):
                    await conn.fetch(
                        f"SELECT 1 FROM {table} WHERE provider_id = $1 AND asset_id = ANY($2) "
                        "FOR UPDATE",
                        provider_id,
                        ids,
                    )
                await asyncio.sleep(HOLD_SECONDS)
            held.append(time.monotonic() - start)
            await asyncio.sleep(RELEASE_SECONDS)
        f.note(f"{len(held)} holds of {LOCKED_ASSETS} assets' rows and stripes, ended")
    finally:
        await conn.close()
    return held


async def _metric(url: str, name: str) -> float:
    """The sum of a counter's samples on a service's /metrics."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url + "/metrics") as answer,
    ):
        text = await answer.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "setting", ["lock_timeout=300ms", "statement_timeout=1500ms"], ids=["lock", "statement"]
)
async def test_postgres_lock_and_statement_timeouts_under_load(
    test_infra: Infra,
    template_database: str,
    tmp_path: Path,
    vhost_amqp_url: str,
    setting: str,
) -> None:
    """The services' database carries a low `lock_timeout` (or `statement_timeout`) while another
    session keeps taking, for seconds at a time, the row locks and lock stripes the reconciler and
    pricing need: their applies time out again and again, are retried in place, and every 202
    still ends decided as the ledger says, with nothing dead-lettered and no 5xx answered."""
    name, value = setting.split("=")
    async with scenario_system(
        test_infra, template_database, tmp_path, amqp_url=vhost_amqp_url
    ) as system:
        database = URL(system.database_url).path.lstrip("/")
        admin = await asyncpg.connect(test_infra.postgres_admin_url)
        try:
            # Every new session of this database (the services' pools) starts with it.
            await admin.execute(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
        finally:
            await admin.close()
        await asyncio.to_thread(system.start)
        people = await people_of(system)
        holds: list[float] = []

        async def schedule(f: Faulting) -> None:
            await f.at(3)
            start = time.time()
            holds.extend(await _hold_locks(system.database_url, people.provider["provider_id"], f))
            # No 503 window: nothing ingest-api does waits on these locks.
            f.faults.append(("locks", start, time.time()))

        # Half the clients: with nothing refused they push as fast as the consumers, held up by
        # the locks, can fall behind; the backlog is decided after the load (decided_within_s).
        result = await run_scenario(
            f"postgres-{name.replace('_', '-')}", system, people, schedule, clients=4
        )
        retries, dead = {}, {}
        for service in ("reconciler", "pricing"):
            url = system.url(service)
            retries[service] = await _metric(url, "rwasync_apply_transient_retries_total")
            dead[service] = await _metric(url, "rwasync_events_dead_lettered_total")
        result.extra.update(holds=len(holds), transient_retries=retries, dead_lettered=dead)
        print(
            f"  {setting}: {len(holds)} holds of {sum(holds):.0f} s in all; transient retries "
            f"{retries}; dead-lettered {dead}"
        )
        assert result.findings.total() == 0, result.findings.report()
        assert result.extra["undecided"] == 0
        assert result.five_xx == 0
        assert not any(dead.values()), dead
        # The locks did bite: the consumers timed out and retried, then recovered by themselves.
        assert retries["reconciler"] > 0, retries
