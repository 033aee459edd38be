"""Applying price ticks, many per broker message: one tick per (asset, as_of) per batch, the
batch's assets locked, then either one set-based statement (providers without a sanity policy)
or record → hold rule → latest refresh (providers with one), with a receipt per tick. After the
commit, a wake-up tells every process's stream that the latest prices moved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Histogram

from rwasync.platform.db import Database
from rwasync.platform.metrics import BATCH_BUCKETS, EVENTS_DECIDED, PRICE_LAG
from rwasync.pricing import queries
from rwasync.pricing.holds import apply_checked
from rwasync.pricing.ticks import Outcome, latest_per_as_of, recorded, tick_columns
from rwasync.schema.events import Event, PriceUpdated, ReceiptStatus
from rwasync.schema.price_holds import TickState
from rwasync.store import prices, receipts
from rwasync.store.receipts import Decision

BATCH_TICKS = Histogram(
    "rwasync_price_batch_ticks", "Ticks applied per transaction", buckets=BATCH_BUCKETS
)


class TickNotApplicable(Exception):
    """An event that does not belong on the price queue: dead-letter it."""


async def apply_plain(conn: asyncpg.Connection, ticks: Sequence[PriceUpdated]) -> Outcome:
    """Ticks of providers without a policy: one statement, the latest guarded in SQL."""
    visible = [(str(TickState.VISIBLE), None, None)] * len(ticks)
    rows = await conn.fetch(queries.APPLY_TICKS, *tick_columns(ticks, visible))
    by_id = {t.event_id: t for t in ticks}
    outcome = Outcome(logged=int(rows[0]["logged"]) if rows else 0)
    for row in rows:
        tick = by_id[row["event_id"]]
        if recorded(row, tick, outcome) is ReceiptStatus.APPLIED:
            outcome.decisions.append(Decision.of(tick, ReceiptStatus.APPLIED, None, row["latest"]))
    return outcome


class PriceApplier:
    def __init__(self, db: Database, on_changes: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_changes = on_changes

    async def apply(self, events: Sequence[Event]) -> None:
        ticks = []
        for event in events:
            if not isinstance(event, PriceUpdated):
                raise TickNotApplicable(f"{event.type} does not belong on the price queue")
            ticks.append(event)
        kept, superseded = latest_per_as_of(ticks)
        outcome = Outcome(
            [
                Decision.of(t, ReceiptStatus.STALE_IGNORED, "superseded in the same batch")
                for t in superseded
            ]
        )
        async with self._db.connection() as conn, conn.transaction():
            # Before the first write: see lock_assets.
            await prices.lock_assets(conn, {(t.provider_id, t.asset_id) for t in kept})
            active = await prices.policies(conn, {t.provider_id for t in kept})
            plain = [t for t in kept if t.provider_id not in active]
            checked = [t for t in kept if t.provider_id in active]
            if plain:
                outcome.add(await apply_plain(conn, plain))
            if checked:
                outcome.add(await apply_checked(conn, checked, active))
            await receipts.record_decisions(conn, outcome.decisions)
            await receipts.redecide_price_ticks(conn, outcome.redecisions)
        BATCH_TICKS.observe(len(ticks))
        now = datetime.now(UTC)
        for tick in kept:
            PRICE_LAG.observe(max(0.0, (now - tick.payload.as_of).total_seconds()))
        for d in outcome.decisions:
            EVENTS_DECIDED.labels(d.type, str(d.status)).inc()
        if outcome.logged and self._on_changes is not None:
            self._on_changes()

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
