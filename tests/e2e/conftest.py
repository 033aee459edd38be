"""End-to-end fixtures: the four services as real processes on a database and vhost of their
own, shared by the e2e tests (tenants are walled, so each test works as its own provider)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.infra import Infra, create_database, drop_database, unique_name
from tests.support.system import System


@contextlib.contextmanager
def own_system(
    test_infra: Infra,
    template_database: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = (),
) -> Iterator[System]:
    """The services (all, or `services`) on a database and vhost of their own."""
    db_name = unique_name("rwasync_e2e")
    vhost = unique_name("rwasync_e2e")
    asyncio.run(create_database(test_infra.postgres_admin_url, db_name, template=template_database))
    test_infra.rabbit.add_vhost(vhost)
    running = System(
        test_infra.database_url(db_name),
        test_infra.amqp_vhost_url(vhost),
        workdir,
        extra_env=dict(extra_env or {}),
    )
    try:
        running.start(*services)
        yield running
    finally:
        running.stop_all()
        test_infra.rabbit.delete_vhost(vhost)
        asyncio.run(drop_database(test_infra.postgres_admin_url, db_name))


@pytest.fixture(scope="session")
def system(
    test_infra: Infra, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir = Path(tmp_path_factory.mktemp("system"))
    with own_system(test_infra, template_database, workdir) as running:
        yield running


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "system" in request.fixturenames:
        print(request.getfixturevalue("system").logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def provider(system: System) -> dict[str, str]:
    _, created = system.cli("provider", "create", unique_name("Provider"), "--json")
    return dict(created)


@pytest.fixture
def reader(system: System) -> dict[str, str]:
    _, created = system.cli("reader", "create", unique_name("Investor"), "--json")
    return dict(created)
