"""A service's host vanishes while it holds locks (power loss, a partition: its connections are
never closed, nothing it sent or was sent arrives). The server must end its sessions within about
30 s (`rwasync.platform.db.SERVER_SETTINGS`: TCP keepalives), not the kernel's two hours, so the
locks every other replica waits on are freed: the change relay's session lock and an open
transaction's row locks, taken through the services' own connection paths. Slow: `make
test-faults`.

The "host" is a network namespace joined to a private Postgres by a veth pair
(`tests.support.netns`); taking its link down makes it vanish.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator

import asyncpg
import pytest

from rwasync.platform.db import LockSpace
from tests.support.netns import VanishingHost, vanishing_host
from tests.support.private_servers import PrivatePostgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOLDER = """
import asyncio, sys
from rwasync.platform.db import Database, LockSpace, connect

async def main(url: str) -> None:
    relay = await connect(url)  # as the change relay holds its lock
    await relay.execute("SELECT pg_advisory_lock($1::int, 0)", int(LockSpace.CHANGE_RELAY))
    db = Database(url, min_size=1, max_size=1)  # as an apply holds its rows
    db.start()
    await db.wait_connected(timeout=30)
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT id FROM vanish_probe WHERE id = 1 FOR UPDATE")
        print("held", flush=True)
        await asyncio.sleep(600)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def host() -> Iterator[VanishingHost]:
    with vanishing_host() as vanishing:
        yield vanishing


@pytest.fixture
def postgres(host: VanishingHost) -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres(extra_listen=host.host_address, extra_network=host.network)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


async def _until_held(holder: asyncio.subprocess.Process) -> list[str]:
    """The holder's output up to its "held" line, or all of it if it ended first."""
    assert holder.stdout is not None
    lines: list[str] = []
    while line := await holder.stdout.readline():  # b"" once the holder exits
        lines.append(line.decode().strip())
        if lines[-1] == "held":
            break
    return lines


async def _both_free(conn: asyncpg.Connection) -> bool:
    async with conn.transaction():
        relay = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1::int, 0)", int(LockSpace.CHANGE_RELAY)
        )
        row = await conn.fetchval("SELECT id FROM vanish_probe WHERE id = 1 FOR UPDATE SKIP LOCKED")
        return bool(relay) and row == 1


async def test_locks_of_a_vanished_host_are_freed_within_a_minute(
    host: VanishingHost, postgres: PrivatePostgres
) -> None:
    local = await asyncpg.connect(postgres.url())
    holder: asyncio.subprocess.Process | None = None
    try:
        await local.execute(
            "CREATE TABLE vanish_probe (id int PRIMARY KEY); INSERT INTO vanish_probe VALUES (1)"
        )
        url = f"postgresql://postgres@{host.host_address}:{postgres.port}/postgres"
        holder = await asyncio.create_subprocess_exec(
            *host.command(sys.executable, "-c", HOLDER, url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = await asyncio.wait_for(_until_held(holder), 60)
        assert output[-1:] == ["held"], output
        assert not await _both_free(local)

        host.vanish()
        vanished = time.monotonic()
        freed_after = None
        while time.monotonic() - vanished < 90:
            if await _both_free(local):
                freed_after = time.monotonic() - vanished
                break
            await asyncio.sleep(0.5)
        print(f"FIGURES vanished_host freed_after_s={freed_after}")
        assert freed_after is not None, "the vanished host's locks were still held after 90 s"
        assert freed_after < 45
        sessions = await local.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = $1::inet", host.address
        )
        assert sessions == 0
    finally:
        if holder is not None and holder.returncode is None:
            holder.kill()
            await asyncio.wait_for(holder.wait(), 10)
        await local.close()
