"""The outbox relay: publishes the change feed's entries as `asset.changed`, then marks them.

Entries are written by the transaction that applied their change, so a change that committed is
never lost: the relay reads the settled entries after its mark (`rwasync.store.catalog`),
publishes them with confirms, and only then moves the mark. A crash in between publishes them
again (at least once; consumers tell repeats by `event_id`). One replica relays at a time: the
holder of a session advisory lock, on a connection of its own; when it dies, its lock goes with
its connection and another replica takes over (a holder whose host vanished loses its session
when the server's keepalives go unanswered: `rwasync.platform.db.SERVER_SETTINGS`). A database
that stops answering the holder fails its statement after `command_timeout`, so the holder gives
the connection up and tries again rather than wait for ever. The holder also applies the change
feed's retention, never past what it has published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Final

import asyncpg
import orjson
import structlog
from prometheus_client import Counter, Gauge

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import LockSpace, connect, is_transient
from rwasync.platform.tasks import cancel_and_wait
from rwasync.reconciler import queries
from rwasync.schema import topology
from rwasync.store.catalog import ChangePosition, changes_after

log = structlog.get_logger(__name__)

RELAY_NAME: Final = "asset.changed"

RELAYED = Counter("rwasync_changes_relayed_total", "Change-feed entries published")
RELAY_HOLDER = Gauge("rwasync_change_relay_holder", "1 while this replica holds the relay lock")
PRUNED = Counter("rwasync_changes_pruned_total", "Change-feed entries removed by retention")


def change_messages(
    items: Sequence[dict[str, Any]], per_message: int
) -> list[tuple[str, str, bytes]]:
    """(routing key, message id, body) per message: consecutive entries of one provider, oldest
    first. The message id is its last entry's cursor, the same however often it is published."""
    messages: list[tuple[str, str, bytes]] = []
    for provider_id, group in groupby(items, key=lambda item: item["provider_id"]):
        entries = list(group)
        for start in range(0, len(entries), per_message):
            chunk = entries[start : start + per_message]
            message_id = chunk[-1]["cursor"]
            body = orjson.dumps({"message_id": message_id, "changes": chunk})
            messages.append((topology.asset_changed_key(provider_id), message_id, body))
    return messages


class ChangeRelay:
    def __init__(
        self,
        database_url: str,
        broker: Broker,
        *,
        interval: float = 0.2,
        page_size: int = 2000,
        per_message: int = 500,
        retention: timedelta = timedelta(days=7),
        prune_every: float = 60.0,
        command_timeout: float = 30.0,
    ) -> None:
        self._database_url = database_url
        self._broker = broker
        self._interval = interval
        self._page_size = page_size
        self._per_message = per_message
        self._retention = retention
        self._prune_every = prune_every
        self._command_timeout = command_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.holding = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-relay")

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_and_wait(self._task)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        await self._broker.wait_ready()
        while not self._stopping.is_set():
            try:
                await self._hold_and_relay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database's or the broker's outage, which the relay rides out: a warning
                # (a broker's was an error, once a second, fault trial); anything else, an error.
                ridden_out = is_transient(exc) or isinstance(exc, BrokerUnavailable)
                level = log.warning if ridden_out else log.error
                level(
                    "change relay interrupted; trying again", error=f"{type(exc).__name__}: {exc}"
                )
            finally:
                self._set_holding(False)
            await self._pause(1.0)

    def _set_holding(self, holding: bool) -> None:
        self.holding = holding
        RELAY_HOLDER.set(1 if holding else 0)

    async def _hold_and_relay(self) -> None:
        conn = await connect(self._database_url, command_timeout=self._command_timeout)
        try:
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1::int, 0)", int(LockSpace.CHANGE_RELAY)
            ):
                await self._pause(self._interval * 5)
                if self._stopping.is_set():
                    return
            self._set_holding(True)
            log.info("relaying the change feed")
            next_prune = 0.0
            loop = asyncio.get_running_loop()
            while not self._stopping.is_set():
                if loop.time() >= next_prune:
                    await prune(conn, self._retention)
                    next_prune = loop.time() + self._prune_every
                if await self.relay_once(conn) < self._page_size:
                    await self._pause(self._interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def relay_once(self, conn: asyncpg.Connection) -> int:
        """Publish the next page of settled entries, then mark them; returns how many."""
        row = await conn.fetchrow(queries.RELAY_POSITION, RELAY_NAME)
        assert row is not None, "migration 0009 creates the relay's row"
        page = await changes_after(conn, ChangePosition.of(row), self._page_size)
        if not page.items:
            return 0
        await asyncio.gather(
            *(
                self._broker.publish_body(
                    topology.CHANGES_EXCHANGE, key, body, message_id=message_id, mandatory=False
                )
                for key, message_id, body in change_messages(page.items, self._per_message)
            )
        )
        await conn.execute(
            queries.MARK_RELAYED, RELAY_NAME, str(page.position.xid), page.position.change_id
        )
        RELAYED.inc(len(page.items))
        return len(page.items)


async def prune(conn: asyncpg.Connection, retention: timedelta, chunk: int = 5000) -> int:
    """Remove entries older than `retention` that the relay published; move the horizon."""
    cutoff = datetime.now(UTC) - retention
    removed = 0
    while True:
        async with conn.transaction():
            row = await conn.fetchrow(queries.PRUNE_CHANGES, cutoff, RELAY_NAME, chunk)
            if row is None:
                break
            await conn.execute(queries.MOVE_HORIZON, row["xid"], row["change_id"])
        removed += row["removed"]
        PRUNED.inc(row["removed"])
        if row["removed"] < chunk:
            break
    if removed:
        log.info("change feed pruned", older_than=cutoff.isoformat())
    return removed
