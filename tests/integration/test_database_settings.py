"""Session settings every service connection carries (`rwasync.platform.db.SERVER_SETTINGS`)."""

from __future__ import annotations

import pytest

from rwasync.platform.db import Database, connect

pytestmark = pytest.mark.integration


async def test_pool_and_single_connections_run_without_jit(db: Database, database_url: str) -> None:
    """JIT compiling a short statement whose estimate a table without statistics inflated cost
    100-250 ms per call (the change feed's read): the services never use it."""
    assert await db.fetchval("SHOW jit") == "off"
    conn = await connect(database_url)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await conn.close()
