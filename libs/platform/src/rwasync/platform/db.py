"""Postgres through asyncpg: a pool opened in the background, so a service starts and answers
`/healthz` while the database is away, and reports ready once the pool answers again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable
from enum import IntEnum
from typing import Any, Final, TypeVar, cast

import asyncpg
import orjson
import structlog

from rwasync.platform.migrate import migrations
from rwasync.platform.retry import retrying
from rwasync.platform.tasks import cancel_and_wait

T = TypeVar("T")

log = structlog.get_logger(__name__)

# Errors after which the same statement may succeed if tried again: the connection went away,
# the server is starting or shutting down, the transaction lost a race, or it waited too long for
# a lock another session held (`lock_timeout`, or `statement_timeout`: an operator's limit on the
# services' role cancels a statement that is slow because it waits, not because it is wrong).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # asyncpg's protocol lost track of a connection's state: seen when the server ended a
    # connection in the middle of a COPY (an error mid-COPY, then the socket closed before the
    # end of the error's exchange), where the rollback on the way out then fails with "cannot
    # switch to state 15; another operation (2) is in progress". That is the connection's fault,
    # never the message's: the fault suite's Postgres kill -9 dead-lettered an event for it.
    asyncpg.exceptions._base.InternalClientError,
)


# --- lock stripes: one global order of advisory locks ---------------------------------------------


class LockSpace(IntEnum):
    """Advisory-lock key spaces, one per kind of key, listed here so that no two collide."""

    ASSETS = 1
    PRICES = 2
    # The session lock of the one replica that relays the change feed (key 0 in this space).
    CHANGE_RELAY = 3
    # The transaction lock feed pollers claim runs under, one claim at a time (key 0).
    FEED_RUN_CLAIMS = 4


async def lock_stripes(
    conn: asyncpg.Connection, keys: list[str], space: LockSpace, stripes: int
) -> None:
    """Serialise concurrent replicas on these keys until the transaction ends, over `stripes`
    hashed stripes of the key space, taken in one global order so that two batches can never
    deadlock. A batch of thousands of keys takes at most `stripes` locks (Postgres' shared lock
    table holds only max_locks_per_transaction x max_connections), at the price of serialising
    batches that share a stripe. Take them before the transaction's first write: a transaction
    waiting for a stripe then gets its transaction id only after the holder committed, and
    `writers_horizon` can tell which writers are still running."""
    await conn.execute(_LOCK_STRIPES, keys, int(space), stripes)


async def stripes_of(
    conn: asyncpg.Connection | asyncpg.Pool, keys: list[str], stripes: int
) -> list[int]:
    """The stripe `lock_stripes` takes for each of `keys`, in order."""
    found: list[int] | None = await conn.fetchval(_STRIPES_OF, keys, stripes)
    return found or []


async def stripe_shares(
    conn: asyncpg.Connection | asyncpg.Pool, keys: Iterable[str], stripes: int, shares: int
) -> dict[str, int]:
    """Each key's share of the stripes: its stripe modulo `shares`. Batches applied as one
    transaction per share, side by side, lock disjoint stripes, and every key always falls in
    the same share, so its writes stay serialised."""
    distinct = list(dict.fromkeys(keys))
    found = await stripes_of(conn, distinct, stripes)
    return {key: stripe % shares for key, stripe in zip(distinct, found, strict=True)}


async def settle(*work: Awaitable[T]) -> list[T]:
    """Runs `work` together and, only once every one has ended (committed or rolled back),
    raises the first failure: a caller that retries must not do so while part of it still runs."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(list[T], outcomes)


# A key's stripe, with the number of stripes in parameter `stripes` (written once for both).
def _stripe(stripes: str) -> str:
    return f"(hashtext(key) & 2147483647) % {stripes}"


_LOCK_STRIPES = f"""
SELECT pg_advisory_xact_lock($2, s)
FROM (SELECT DISTINCT {_stripe("$3")} AS s FROM unnest($1::text[]) AS u(key)
      ORDER BY 1) AS stripes
"""
# One array rather than a row per key: a consumer asks this for every batch (the shares), and
# asyncpg's record per row cost more than the query.
_STRIPES_OF = f"""
SELECT array_agg({_stripe("$2")} ORDER BY n) FROM unnest($1::text[]) WITH ORDINALITY AS u(key, n)
"""


# The horizon of a change log whose rows record their transaction id (`pg_current_xact_id()`)
# and whose writers all take stripe locks of one key space ($1) before their first write and hold
# them to the end: a transaction id below which every such writer has ended. The writers still
# running are those holding a stripe lock here; their ids come from their `transactionid` locks
# (32 bits, widened with the epoch of xmax). Read it *before* the changes: a writer not listed has
# ended, or gets an id >= xmax. Unlike `pg_snapshot_xmin` (cluster-wide), transactions of other
# databases and other tables never hold the log back.
_WRITERS_HORIZON = """
WITH writers AS (
    SELECT virtualtransaction FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND classid = $1 AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
xids AS (
    SELECT l.transactionid::text::bigint AS xid32
    FROM pg_locks l JOIN writers w USING (virtualtransaction)
    WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
),
next AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax),
widened AS (
    -- A 32-bit id far above xmax's low bits belongs to the previous epoch; one at or just above
    -- xmax was assigned after this statement's snapshot (pg_locks is live): it cannot hold back
    -- anything below xmax, which `least` below caps it to.
    SELECT CASE WHEN ((n.xmax >> 32) << 32) | x.xid32 >= n.xmax + 2147483648
                THEN (((n.xmax >> 32) << 32) | x.xid32) - 4294967296
                ELSE ((n.xmax >> 32) << 32) | x.xid32 END AS xid
    FROM next n JOIN xids x ON true
)
SELECT least(n.xmax, (SELECT min(xid) FROM widened)) FROM next n
"""


async def writers_horizon(conn: asyncpg.Connection | asyncpg.Pool, space: LockSpace) -> int:
    """The transaction id below which every writer holding `space`'s stripe locks has ended:
    change-log rows with a smaller id are settled, and none with a smaller id will appear."""
    return int(await conn.fetchval(_WRITERS_HORIZON, int(space)))


# Whether this session may write: false on a standby and under `default_transaction_read_only`.
WRITABLE_CHECK: Final = "SELECT current_setting('transaction_read_only') = 'off'"


# --- outages: what is transient -------------------------------------------------------------------


class DatabaseUnavailable(Exception):
    """The pool is not connected (yet): callers answer 503 or retry later."""


# InterfaceError also covers client-side faults that no retry can mend: a value that cannot be
# encoded for its column type, a misconfiguration. Those are poison, not outages.
PERMANENT_CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions._base.DataError,
    asyncpg.exceptions._base.ClientConfigurationError,
    asyncpg.exceptions._base.UnsupportedClientFeatureError,
    asyncpg.exceptions._base.UnsupportedServerFeatureError,
)


# SQLSTATEs that say the database is not fit to work right now, whatever the statement or the
# data: an outage (callers answer 503 or retry in place), never a reason to dead-letter an
# event. By class: 08 connection exception, 40 transaction rollback (serialization, deadlock),
# 53 insufficient resources (disk full, out of memory, too many connections), 55 object not in
# prerequisite state (a database not accepting connections, a lock not available), 57 operator
# intervention (shutdown, cancel, cannot connect now), 58 system error (I/O). By code: 25006 a
# read-only transaction (a primary demoted to a standby by a failover, or
# `default_transaction_read_only`), 28000 and 28P01 refused credentials (a password being
# rotated), 3D000 the database does not exist (yet).
TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "55", "57", "58"})
TRANSIENT_SQLSTATES: Final = frozenset({"25006", "28000", "28P01", "3D000"})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PERMANENT_CLIENT_ERRORS):
        return False
    if isinstance(exc, (DatabaseUnavailable, *TRANSIENT_ERRORS)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", None) or ""
        return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES
    return False


# --- connections: codecs, session settings, single connections ------------------------------------


def _jsonb_out(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _jsonb_in(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    """JSON and JSONB columns in and out as Python objects, through orjson. JSONB travels in
    its binary form (a version byte, then the text), which COPY needs and which spares a
    str round trip per document."""
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_out, decoder=_jsonb_in, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


# Session settings of every service connection.
# - JIT off: the services run short statements whose cost estimates a table without statistics
#   yet can inflate past `jit_above_cost` (the change feed's read of a never-analysed one-row
#   horizon table was planned at ~10^6), and then each call spends 100-250 ms compiling what runs
#   in 1 ms.
# - TCP keepalives and a user timeout on the server's side of the connection: when a service's
#   host vanishes without closing its connections (power loss, a partition), the server ends its
#   sessions after about 30 s instead of the kernel's two hours (an idle session: 10 s, then
#   probes 5 s apart) or fifteen minutes (a session whose last answer the host never
#   acknowledged: the user timeout), and with them the locks they held: the change relay's
#   session lock, an open apply's row and stripe locks, which every other replica waits on.
#   Linux also ends a connection whose reader leaves its receive window full for the user
#   timeout; every reader of these connections (asyncpg in an event loop) drains its socket as
#   data arrives. Ignored on Unix sockets, where no host can vanish.
DEAD_PEER_SECONDS: Final = 30
SERVER_SETTINGS: dict[str, str] = {
    "jit": "off",
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "4",
    "tcp_user_timeout": str(DEAD_PEER_SECONDS * 1000),
}


async def connect(
    dsn: str, *, timeout: float = 10, command_timeout: float | None = None
) -> asyncpg.Connection:
    """One connection outside a pool (the CLI, a LISTEN, the relay's lock), with the same codecs
    and session settings as the pool's. `command_timeout`: seconds a statement may take, after
    which it is cancelled (`None`: no limit)."""
    conn = await asyncpg.connect(
        dsn,
        timeout=timeout,
        command_timeout=command_timeout,
        server_settings=SERVER_SETTINGS,
        connection_class=_Connection,
    )
    await _init_connection(conn)
    return conn


async def _release_as_is(conn: asyncpg.Connection) -> None:
    """Pooled connections carry no session state (session locks, LISTEN, SET and cursors outside
    a transaction all use connections of their own: the relay's lock, the poller's LISTEN, the
    migrations), so release skips asyncpg's reset query (`pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`): one round trip less per acquire, on every request and every apply.
    asyncpg still rolls back a transaction left open before calling this."""


# How long a cancelled statement's connection waits for the server to acknowledge the cancel.
CANCEL_WAIT: Final = 2.0
# Seconds between checks of a database that lacks this release's migrations.
SCHEMA_CHECK_SECONDS: Final = 5.0
# Seconds `Database.close` waits for its connections to close cleanly before dropping them.
POOL_CLOSE_SECONDS: Final = 10.0


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, with a bounded wait for a cancel. A statement cancelled by its
    caller (a request's deadline, a consumer's watchdog, a stop) is cancelled on the server
    (asyncpg sends a CancelRequest), and the connection waits for the acknowledgement before its
    next command (the transaction's ROLLBACK, the pool's release). asyncpg allows that wait the
    command timeout (60 s): from a server that stopped answering (its host gone, a partition), a
    read with a 5 s deadline answered its 503 after 65 s. Past `CANCEL_WAIT` the connection is
    closed instead, as asyncpg does when a cancel fails: whatever waited on it fails at once,
    the pool opens a new one, and the server rolls back what it had open."""

    async def _cancel(self, waiter: Any, cancel_waiter: Any = None) -> None:
        cancelling = asyncio.ensure_future(super()._cancel(waiter, cancel_waiter))
        try:
            done, _ = await asyncio.wait({cancelling}, timeout=CANCEL_WAIT)
            if not done and not self.is_closed():
                self.terminate()  # ends the wait above and everything waiting on this connection
            await cancelling
        except asyncio.CancelledError:
            # The connection's teardown cancels its cancels (asyncpg's own `_cancel` swallows
            # that too): the inner one completes its waiters as it ends.
            cancelling.cancel()


# --- the pool: opened in the background, readiness, close -----------------------------------------


class Database:
    """An asyncpg pool that is created by a background task with backoff.

    asyncpg re-opens broken pool connections on acquire, so once the pool exists it recovers from
    a database restart by itself; only the first connection needs the retry loop.
    """

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, require_schema: bool = False
    ) -> None:
        """`require_schema`: connected only once the database has every migration this code
        knows (a service's: it would otherwise work on a schema it does not match)."""
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._require_schema = require_schema
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        # The readiness check's own connection, opened on the first check and again after one
        # failed: a pool busy with a backlog (every connection applying or queued on a lock)
        # must not make the database look away.
        self._ping_conn: asyncpg.Connection | None = None
        self._ping_lock = asyncio.Lock()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseUnavailable("database not connected yet")
        return self._pool

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name="db-connect")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def is_connected(self) -> bool:
        """Whether the pool exists (it reconnects by itself from then on)."""
        return self._connected.is_set()

    async def _connect_forever(self) -> None:
        async for attempt in retrying("database connect"):
            with attempt:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    init=_init_connection,
                    server_settings=SERVER_SETTINGS,
                    reset=_release_as_is,
                    connection_class=_Connection,
                    timeout=10,
                    command_timeout=60,
                )
        if self._require_schema:
            await self._wait_for_schema()
        self._connected.set()
        log.info("database connected")

    async def _wait_for_schema(self) -> None:
        """Until the database has every migration of this release. A service of a new release
        started before `rwasync migrate` dead-lettered every tick its new statements could not
        run (upgrade trial): it now waits, not ready and consuming nothing, saying why once."""
        expected = {m.version for m in migrations()}
        said = False
        while True:
            try:
                applied = {
                    r["version"]
                    for r in await self.pool.fetch("SELECT version FROM schema_migrations")
                }
            except asyncpg.UndefinedTableError:
                applied = set()
            missing = sorted(expected - applied)
            if not missing:
                return
            if not said:
                log.error(
                    "the database lacks migrations this release needs: run `rwasync migrate`;"
                    " waiting for them",
                    missing=missing,
                )
                said = True
            await asyncio.sleep(SCHEMA_CHECK_SECONDS)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        async with self._ping_lock:
            self._drop_ping_connection()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), POOL_CLOSE_SECONDS)
            except TimeoutError:
                # A database that stalls (no answer, no reset) never acknowledges the goodbyes:
                # the TimeoutError ended a service's clean stop with exit 1 and a "cannot
                # listen" line (fault trial). Nothing is left to lose: drop the connections.
                log.warning(
                    "database connections not closed in time; dropped",
                    after=POOL_CLOSE_SECONDS,
                )
                self._pool.terminate()

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers within `timeout` seconds that it takes writes (not a
        read-only standby, e.g. a primary demoted by a failover), asked on a connection of the
        check's own, never one queued behind the pool's work. False until the pool exists (the
        service cannot work before)."""
        if self._pool is None or not self._connected.is_set():
            return False
        async with self._ping_lock:
            try:
                async with asyncio.timeout(timeout):
                    if self._ping_conn is not None:
                        try:
                            return bool(await self._ping_conn.fetchval(WRITABLE_CHECK))
                        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                            self._drop_ping_connection()  # reset or closed: once more, anew
                    self._ping_conn = await asyncpg.connect(
                        self._dsn, server_settings=SERVER_SETTINGS
                    )
                    return bool(await self._ping_conn.fetchval(WRITABLE_CHECK))
            except Exception:
                self._drop_ping_connection()
                return False

    def _drop_ping_connection(self) -> None:
        """Forget the check's connection, closing its socket without a goodbye (it may hang)."""
        if self._ping_conn is not None:
            self._ping_conn.terminate()
            self._ping_conn = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self.pool.execute(query, *args)
        return status
