"""The poller's wake-up: a Postgres connection of its own LISTENs on the channel the CLI and the
feed API notify, so a trigger or an approval starts within a second instead of at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from rwasync.platform.db import connect
from rwasync.platform.retry import retrying
from rwasync.store.feeds import FEED_WAKEUP_CHANNEL

log = structlog.get_logger(__name__)

# A silent network loss never fires the termination listener: probe the connection this often.
PROBE_SECONDS = 15.0


class Wakeup:
    """Sets `event` on every notification, and once after each (re)connect, since anything
    requested while nobody listened is found by the next poll it triggers."""

    def __init__(self, database_url: str, event: asyncio.Event) -> None:
        self._database_url = database_url
        self._event = event
        self.listening = False

    async def listen_forever(self) -> None:
        while True:
            conn = await self._connect()
            try:
                await self._listen(conn)
                log.warning("feed wakeup connection closed, reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost mid-listen: reconnect
                log.warning("feed wakeup connection lost, reconnecting", error=str(exc))
            finally:
                self.listening = False
                await _close(conn)

    async def _connect(self) -> asyncpg.Connection:
        async for attempt in retrying("feed wakeup listener connect"):
            with attempt:
                return await connect(self._database_url)
        raise AssertionError("unreachable: retrying() retries until it succeeds")

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(FEED_WAKEUP_CHANNEL, lambda *_: self._event.set())
        self.listening = True
        self._event.set()
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_SECONDS):
                    await lost.wait()
            if not conn.is_closed():
                async with asyncio.timeout(5):
                    await conn.execute("SELECT 1")


async def _close(conn: asyncpg.Connection) -> None:
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception as exc:  # the connection is dropped either way
        log.debug("feed wakeup connection did not close cleanly", error=str(exc))
        conn.terminate()
