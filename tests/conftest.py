"""Fixtures shared by every tier: the infrastructure, an isolated database and vhost per test."""

from __future__ import annotations

import os

# Before any settings class is imported: tests never read a developer's `.env`; every process they
# start gets its settings explicitly (subprocesses inherit this).
os.environ.setdefault("RWASYNC_ENV_FILE", os.devnull)

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from rwasync.platform.migrate import migrate
from tests.support.infra import (
    Infra,
    create_database,
    drop_database,
    infra,
    unique_name,
)


@pytest.fixture(scope="session")
def test_infra() -> Iterator[Infra]:
    with infra() as found:
        yield found


@pytest.fixture(scope="session")
def template_database(test_infra: Infra) -> Iterator[str]:
    """A migrated database that each test's database is copied from (fast, isolated)."""
    name = unique_name("rwasync_tpl")
    asyncio.run(migrate(test_infra.database_url(name)))
    yield name
    asyncio.run(drop_database(test_infra.postgres_admin_url, name))


@pytest.fixture
async def database_url(test_infra: Infra, template_database: str) -> AsyncIterator[str]:
    name = unique_name("rwasync_test")
    await create_database(test_infra.postgres_admin_url, name, template=template_database)
    yield test_infra.database_url(name)
    await drop_database(test_infra.postgres_admin_url, name)


@pytest.fixture
def vhost_amqp_url(test_infra: Infra) -> Iterator[str]:
    """An AMQP URL on a vhost of this test's own."""
    vhost = unique_name("rwasync_test")
    test_infra.rabbit.add_vhost(vhost)
    yield test_infra.amqp_vhost_url(vhost)
    test_infra.rabbit.delete_vhost(vhost)
