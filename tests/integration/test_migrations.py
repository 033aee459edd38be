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


async def test_a_database_migrated_before_0004s_comment_fix_gets_its_checksum_mended(
    test_infra: Infra,
) -> None:
    name = unique_name("rwasync_mig")
    url = test_infra.database_url(name)
    old_0004 = "14944fb421e7b2935b5435f17d8af41323bcfeac546599b74a33129e577f8e0b"
    current = {m.version: m.checksum for m in migrations()}
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            # As a database migrated before: 0004 applied with its old text, 0005 not yet.
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $1 WHERE version = '0004_feeds'", old_0004
            )
            await conn.execute(
                "DELETE FROM schema_migrations WHERE version = '0005_feed_threshold_default'"
            )
            await migrate(url)
            rows = dict(await conn.fetch("SELECT version, checksum FROM schema_migrations"))
        finally:
            await conn.close()
        assert rows == current
    finally:
        await drop_database(test_infra.postgres_admin_url, name)
