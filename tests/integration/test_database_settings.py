"""Session settings every service connection carries (`rwasync.platform.db.SERVER_SETTINGS`)."""

from __future__ import annotations

import pytest

from rwasync.platform.db import Database, connect

pytestmark = pytest.mark.integration


SETTINGS = (
    "SELECT current_setting('jit'), current_setting('tcp_keepalives_idle'),"
    " current_setting('tcp_user_timeout')"
)


async def test_pool_and_single_connections_carry_the_session_settings(
    db: Database, database_url: str
) -> None:
    """JIT compiling a short statement whose estimate a table without statistics inflated cost
    100-250 ms per call (the change feed's read): the services never use it. And the server
    probes every service connection, so a vanished host's sessions and locks end within about
    30 s (tests/e2e/test_vanished_host.py shows it with a host that vanishes)."""
    expected = ("off", "10", "30000")
    assert tuple(await db.fetchrow(SETTINGS)) == expected  # type: ignore[arg-type]
    conn = await connect(database_url)
    try:
        assert tuple(await conn.fetchrow(SETTINGS)) == expected
    finally:
        await conn.close()
