"""Applying price ticks: one tick per (asset, as_of) per batch, then one set-based statement
that records history and moves the latest price forward only, with a receipt per tick."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from rwasync.platform.db import Database, LockSpace, lock_keys
from rwasync.pricing import queries
from rwasync.schema.events import Event, PriceUpdated, ReceiptStatus
from rwasync.schema.versions import newest_per_key
from rwasync.store import receipts
from rwasync.store.receipts import Decision

TICKS = Counter("rwasync_price_ticks_total", "Price ticks decided", ["outcome", "latest"])


class TickNotApplicable(Exception):
    """An event that does not belong on the price queue: dead-letter it."""


def latest_per_as_of(
    ticks: Sequence[PriceUpdated],
) -> tuple[list[PriceUpdated], list[PriceUpdated]]:
    """One tick per (asset, as_of): the later-accepted wins; the others are superseded."""
    return newest_per_key(
        ticks,
        key=lambda t: (t.provider_id, t.asset_id, t.payload.as_of),
        order=lambda t: (t.accepted_at, str(t.event_id)),
        identity=lambda t: t.event_id,
    )


class PriceApplier:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def apply(self, events: Sequence[Event]) -> None:
        ticks = []
        for event in events:
            if not isinstance(event, PriceUpdated):
                raise TickNotApplicable(f"{event.type} does not belong on the price queue")
            ticks.append(event)
        kept, superseded = latest_per_as_of(ticks)
        decisions: list[Decision] = []
        async with self._db.connection() as conn, conn.transaction():
            await lock_keys(conn, [f"{t.provider_id}/{t.asset_id}" for t in kept], LockSpace.PRICES)
            rows = await conn.fetch(
                queries.APPLY_PRICE_TICKS,
                [t.provider_id for t in kept],
                [t.asset_id for t in kept],
                [t.payload.as_of for t in kept],
                [t.payload.amount for t in kept],
                [t.payload.currency for t in kept],
                [t.accepted_at for t in kept],
                [t.event_id for t in kept],
            )
            by_id = {t.event_id: t for t in kept}
            for row in rows:
                outcome = ReceiptStatus(row["outcome"])
                reason = (
                    "a later-accepted price for the same as_of is stored"
                    if outcome == ReceiptStatus.STALE_IGNORED
                    else None
                )
                latest = row["latest"] if outcome == ReceiptStatus.APPLIED else None
                decisions.append(Decision.of(by_id[row["event_id"]], outcome, reason, latest))
            decisions.extend(
                Decision.of(t, ReceiptStatus.STALE_IGNORED, "superseded in the same batch")
                for t in superseded
            )
            await receipts.record_decisions(conn, decisions)
        for d in decisions:
            TICKS.labels(d.status, str(d.latest).lower()).inc()

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
