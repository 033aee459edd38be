"""Fault scenarios under the soak's load (singles and batches of assets and prices), each against
servers of its own so it may kill them: the broker node killed and restarted, its memory and disk
alarms, Postgres restarted and killed. Each ends in the ledger's verdict (tests/e2e/scenarios.py)
and prints a `FIGURES` line for docs/reliability.md. Slow: `make test-faults`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.scenarios import Faulting, people_of, ready, run_scenario, scenario_system
from tests.support.infra import Infra
from tests.support.private_servers import PrivatePostgres, PrivateRabbit, private_postgres
from tests.support.private_servers import private_rabbit as private_rabbit_node
from tests.support.system import System

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
