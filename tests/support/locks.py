"""Waiting, in a test, for a session of the test's database to queue on an advisory lock."""

from __future__ import annotations

import asyncpg

from rwasync.platform.db import Database
from tests.support.waiting import eventually


async def stripe_waiter(db: Database) -> asyncpg.Record:
    """The first session of `db`'s database found waiting for an advisory lock (a batch queued
    on a lock stripe), with its transaction id as `xid` (NULL until it writes). Read through the
    pool: a transaction sees pg_stat_activity as it first read it."""
    row: asyncpg.Record = await eventually(
        lambda: db.fetchrow(
            "SELECT a.backend_xid::text AS xid FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND NOT l.granted"
            " AND a.datname = current_database()"  # pg_locks is the whole server's
        ),
        lambda row: row is not None,
        interval=0.02,
        what="the batch waiting for its stripe",
    )
    return row
