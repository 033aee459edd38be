"""Migrations: from an empty server (database created), idempotent re-run, concurrent runs."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from rwasync.platform.migrate import migrate, migrations
from tests.support.infra import Infra, drop_database, unique_name

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    "providers",
    "provider_credentials",
    "readers",
    "event_receipts",
    "assets",
    "asset_prices",
    "price_history",
    "feed_sources",
    "feed_runs",
    "schema_migrations",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        return {r["table_name"] for r in rows}
    finally:
        await conn.close()


async def test_migrate_creates_database_and_is_idempotent(test_infra: Infra) -> None:
    name = unique_name("rwasync_mig")
    url = test_infra.database_url(name)
    try:
        first = await migrate(url)
        assert first == [m.version for m in migrations()]
        tables = await _tables(url)
        assert tables >= EXPECTED_TABLES
        assert {"asset_state", "latest_prices"} <= tables  # the views other services read
        assert await migrate(url) == []
    finally:
        await drop_database(test_infra.postgres_admin_url, name)


async def test_concurrent_migrations_apply_each_file_once(test_infra: Infra) -> None:
    name = unique_name("rwasync_mig")
    url = test_infra.database_url(name)
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        applied = [v for r in results for v in r]
        assert sorted(applied) == [m.version for m in migrations()]
        conn = await asyncpg.connect(url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()
        assert count == len(migrations())
    finally:
        await drop_database(test_infra.postgres_admin_url, name)
