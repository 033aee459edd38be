"""`Database.ping`, the readiness check: whether the database answers, asked on a connection of
its own, so that a pool busy with a backlog is not mistaken for a database that went away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs

from rwasync.platform import db as db_module
from rwasync.platform.db import CANCEL_WAIT, WRITABLE_CHECK, Database, is_transient
from tests.support.tcpproxy import proxied

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _database(url: str, *, max_size: int) -> AsyncIterator[Database]:
    database = Database(url, min_size=1, max_size=max_size)
    database.start()
    await database.wait_connected(timeout=30)
    try:
        yield database
    finally:
        await database.close()


async def test_a_pool_busy_with_work_still_reports_the_database_ready(database_url: str) -> None:
    """Every pooled connection held (applying, or queued on a lock): the check still answers
    at once. Before, it queued for a pooled connection and timed out: a reconciler working
    through a backlog said it was not ready for as long as the backlog lasted."""
    async with _database(database_url, max_size=2) as db:
        held = [await db.pool.acquire() for _ in range(2)]
        try:
            started = time.monotonic()
            assert await db.ping(timeout=2.0)
            assert time.monotonic() - started < 1.5
            assert db.pool.get_idle_size() == 0  # the check took no pooled connection
        finally:
            for conn in held:
                await db.pool.release(conn)


async def test_the_check_notices_a_database_that_stops_answering_and_its_return(
    database_url: str,
) -> None:
    async with proxied(database_url) as (proxy, url), _database(url, max_size=2) as db:
        assert await db.ping()
        proxy.pause()  # connections stay open; nothing comes back
        assert not await db.ping(timeout=0.5)
        proxy.resume()
        assert await db.ping()
        proxy.reset()  # the check's connection is reset: it opens another
        assert await db.ping()
        await proxy.cut()
        assert not await db.ping(timeout=0.5)
        await proxy.restore()
        assert await db.ping()


async def test_the_check_keeps_one_connection_and_closes_it_with_the_pool(
    database_url: str,
) -> None:
    async def backends(query: str | None = None) -> int:
        conn = await asyncpg.connect(database_url)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND ($1::text IS NULL OR query = $1)",
                query,
            )
            return count
        finally:
            await conn.close()

    async with _database(database_url, max_size=2) as db:
        for _ in range(5):
            assert await db.ping()
        assert await backends(WRITABLE_CHECK) == 1
    for _ in range(50):  # a terminated socket's backend ends a moment later
        if await backends() == 0:
            break
        await asyncio.sleep(0.1)
    assert await backends() == 0


async def test_a_deadline_ends_a_statement_the_database_never_answers_soon(
    database_url: str,
) -> None:
    """A statement with a deadline, on a database that stopped answering (connections open,
    nothing comes back), ends within its deadline and the cancel's bounded wait (CANCEL_WAIT),
    not the 60 s command timeout: alone, or inside a transaction (whose ROLLBACK waits for the
    cancel too). The pool serves again once the database answers."""
    async with proxied(database_url) as (proxy, url), _database(url, max_size=2) as db:
        assert await db.fetchval("SELECT 1") == 1
        for read in (lambda: db.fetchval("SELECT 1"), lambda: db.fetch("SELECT 1")):
            proxy.pause()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await read()
            assert time.monotonic() - started < 1 + CANCEL_WAIT + 2
            proxy.resume()
        async with db.connection() as conn:
            started = time.monotonic()
            with pytest.raises(Exception) as ended:
                async with asyncio.timeout(1), conn.transaction():
                    await conn.execute("SELECT 1")
                    proxy.pause()
                    await conn.execute("SELECT 2")
            # the deadline, or the closed connection the ROLLBACK found: both transient
            assert is_transient(ended.value), repr(ended.value)
            assert time.monotonic() - started < 1 + CANCEL_WAIT + 2
        proxy.resume()
        assert await db.fetchval("SELECT 2") == 2


async def test_a_statement_cancelled_by_its_deadline_stops_on_the_server(
    database_url: str,
) -> None:
    """The cancel reaches a database that answers: the statement stops there, not only in the
    caller (a backend left running it would escape the pool's size)."""
    async with _database(database_url, max_size=2) as db:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await db.fetchval("SELECT pg_sleep(30) /* cancelled-probe */")
        await asyncio.sleep(0.5)
        running = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE state = 'active' AND query LIKE '%cancelled-probe%'
                 AND pid <> pg_backend_pid()"""
        )
        assert running == 0


async def test_closing_on_a_database_that_stopped_answering_drops_the_connections(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's goodbyes are never acknowledged by a stalled database: its close timed out,
    and the TimeoutError ended a service's clean stop with exit 1 and a "cannot listen" line
    (fault trial). It now gives up after its time and drops the connections."""
    monkeypatch.setattr(db_module, "POOL_CLOSE_SECONDS", 1.0, raising=False)
    async with proxied(database_url) as (proxy, url):
        database = Database(url, min_size=2, max_size=2)
        database.start()
        await database.wait_connected(timeout=30)
        proxy.pause()
        started = time.monotonic()
        with capture_logs() as logs:
            await database.close()
        assert time.monotonic() - started < 5
        assert [e["event"] for e in logs] == ["database connections not closed in time; dropped"]
        proxy.resume()


async def test_a_service_database_waits_for_this_releases_migrations(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new release's pricing, started before `rwasync migrate`, dead-lettered every tick its
    statements could not run (upgrade trial). A service's database counts as connected (and
    ready) only once every migration the release knows is applied; it says so once."""
    monkeypatch.setattr(db_module, "SCHEMA_CHECK_SECONDS", 0.1)
    admin = Database(database_url, min_size=1, max_size=1)
    admin.start()
    await admin.wait_connected(timeout=30)
    newest = await admin.pool.fetchrow(
        "DELETE FROM schema_migrations WHERE version = (SELECT max(version)"
        " FROM schema_migrations) RETURNING version, checksum"
    )
    service = Database(database_url, min_size=1, max_size=2, require_schema=True)
    try:
        with capture_logs() as logs:
            service.start()
            with pytest.raises(TimeoutError):
                await service.wait_connected(timeout=1.0)
            assert not await service.ping()
            await admin.pool.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", *newest
            )
            await service.wait_connected(timeout=10)
        assert await service.ping()
        waiting = [e for e in logs if e["event"].startswith("the database lacks migrations")]
        assert len(waiting) == 1 and waiting[0]["missing"] == [newest["version"]]
        assert waiting[0]["log_level"] == "error"
    finally:
        await service.close()
        await admin.close()
