"""Applying price ticks, many per broker message: one tick per (asset, as_of) per batch, the
batch's assets locked, then either one set-based statement that also writes the receipts
(providers without a sanity policy) or record → hold rule → latest refresh (providers with one),
with a receipt per tick. After the commit, a wake-up tells every process's stream that the latest
prices moved.

Round trips per message without a policy: one — `price_apply_ticks` (migration 0016), called
outside a transaction block, takes the stripe locks and then runs the apply statement, which
gets a snapshot of its own (the locks could not be folded into the statement itself: they would
be taken after its snapshot, so a batch that waited for another would decide against history as
it was before that one committed). Before: BEGIN, the locks, the policy look-up, the apply
statement, the receipts insert, COMMIT.

Which providers have a policy is remembered per process (`PolicyCache`); the apply statement
checks that belief in its own snapshot and writes nothing when a provider it took for
policy-free has one (then its policy is read and its ticks take the checked path, in the same
transaction). So a policy set by the operator applies to every tick whose apply statement starts
after the policy committed — exactly as when the policies were read in every transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg
from prometheus_client import Histogram

from rwasync.platform.db import Database, LockSpace, settle, stripe_shares
from rwasync.platform.metrics import BATCH_BUCKETS, EVENTS_DECIDED, PRICE_LAG, observe_each
from rwasync.pricing import queries
from rwasync.pricing.holds import apply_checked
from rwasync.pricing.ticks import (
    REPLACED_REASON,
    STALE_REASON,
    Outcome,
    latest_per_as_of,
)
from rwasync.schema.events import AnyEvent, EventType, PriceUpdated, ReceiptStatus
from rwasync.schema.price_holds import NO_POLICY, PricePolicy
from rwasync.schema.raw_events import PriceTick, RawPriceUpdated
from rwasync.store import prices, receipts
from rwasync.store.receipts import Decision

BATCH_TICKS = Histogram(
    "rwasync_price_batch_ticks", "Ticks applied per transaction", buckets=BATCH_BUCKETS
)
# "Batch" would read as the request; the ticks may come from several, applied together.
SUPERSEDED_REASON = "superseded by a later-accepted tick with the same as_of, applied with it"


def once_if_equal(values: list[str]) -> list[str]:
    """A column of APPLY_TICKS sent once when every tick has the same value (an array of one)."""
    return values[:1] if values and values.count(values[0]) == len(values) else values


class TickNotApplicable(Exception):
    """An event that does not belong on the price queue: dead-letter it."""


@dataclass
class PlainResult:
    """What the policy-free statement did: receipts written per status and changes logged, or
    nothing at all when some of its providers turned out to have a policy (`policed`)."""

    decided: dict[str, int] = field(default_factory=dict)
    logged: int = 0
    policed: frozenset[str] = frozenset()


def apply_arguments(ticks: Sequence[PriceTick], superseded: Sequence[PriceTick]) -> list[object]:
    """APPLY_TICKS's arguments ($1–$16): the ticks, those they superseded, the reasons."""
    return [
        once_if_equal([t.provider_id for t in ticks]),
        [t.asset_id for t in ticks],
        [t.payload.as_of for t in ticks],
        [t.payload.amount for t in ticks],
        [t.payload.currency for t in ticks],
        [t.accepted_at for t in ticks],
        [t.event_id for t in ticks],
        once_if_equal([t.trace_id for t in ticks]),
        [t.event_id for t in superseded],
        [t.provider_id for t in superseded],
        [t.asset_id for t in superseded],
        [t.accepted_at for t in superseded],
        [t.trace_id for t in superseded],
        STALE_REASON,
        SUPERSEDED_REASON,
        REPLACED_REASON,
    ]


async def apply_plain(
    conn: asyncpg.Connection, ticks: Sequence[PriceTick], superseded: Sequence[PriceTick]
) -> PlainResult:
    """Ticks of providers believed to have no policy, and the ticks they superseded in the
    batch: one statement locks their assets' stripes (again, harmlessly, inside the checked
    path's transaction), records them, moves the latest prices and writes every receipt."""
    row = await conn.fetchrow(
        queries.APPLY_PLAIN,
        *apply_arguments(ticks, superseded),
        int(LockSpace.PRICES),
        prices.LOCK_STRIPES,
    )
    assert row is not None
    if row["policed"]:
        return PlainResult(policed=frozenset(row["policed"]))
    return PlainResult(
        decided=dict(zip(row["statuses"] or (), row["counts"] or (), strict=True)),
        logged=int(row["logged"]),
    )


class PolicyCache:
    """The providers this process last saw with an active sanity policy. Only a hint of which
    path to try: the policy-free statement re-checks it, and the checked path reads the
    policies afresh, so a stale entry costs one extra statement, never a wrong outcome."""

    def __init__(self) -> None:
        self._policed: set[str] = set()

    def suspects(self, provider_ids: Collection[str]) -> set[str]:
        return {p for p in provider_ids if p in self._policed}

    def seen(self, looked_up: Collection[str], active: Collection[str]) -> None:
        """The policies of `looked_up` were read: `active` are those with a policy."""
        self._policed.difference_update(looked_up)
        self._policed.update(active)


# Batches of fewer ticks apply in one transaction whatever the shares.
SHARED_FROM: Final = 64


def _stripe_key(tick: PriceTick) -> str:
    return f"{tick.provider_id}/{tick.asset_id}"  # as `prices.lock_assets` and the function


class PriceApplier:
    """Applies a broker message's ticks. A message of hundreds of assets takes nearly every lock
    stripe, so its transaction would wait for every other message's: one Postgres backend at work
    at a time however many applies are under way. So, as the reconciler does, the stripes are
    dealt into `shares` (stripe modulo shares) and a message applies as one transaction per share,
    side by side, each taking only its share's stripes. An asset's ticks always fall in one share,
    so its prices, history and holds stay serialised; a share that fails fails the message once
    every share has ended, and the retry finds what the others committed decided already."""

    def __init__(
        self, db: Database, on_changes: Callable[[], None] | None = None, *, shares: int = 1
    ) -> None:
        if not 1 <= shares <= prices.LOCK_STRIPES:
            raise ValueError(f"shares must be between 1 and {prices.LOCK_STRIPES}")
        self._db = db
        self._on_changes = on_changes
        self._policies = PolicyCache()
        self._shares = shares

    async def apply(self, events: Sequence[RawPriceUpdated | AnyEvent]) -> None:
        ticks: list[PriceTick] = []
        for event in events:
            if not isinstance(event, RawPriceUpdated | PriceUpdated):
                raise TickNotApplicable(f"{event.type} does not belong on the price queue")
            ticks.append(event)
        kept, superseded = latest_per_as_of(ticks)
        if self._shares == 1 or len(kept) < SHARED_FROM:
            applied = [await self._apply_share(kept, superseded)]
        else:
            share_of = await stripe_shares(
                self._db.pool, map(_stripe_key, kept), prices.LOCK_STRIPES, self._shares
            )
            shares: list[tuple[list[PriceTick], list[PriceTick]]] = [
                ([], []) for _ in range(self._shares)
            ]
            for tick in kept:
                shares[share_of[_stripe_key(tick)]][0].append(tick)
            for tick in superseded:  # superseded at the (asset, as_of) of a kept tick
                shares[share_of[_stripe_key(tick)]][1].append(tick)
            applied = await settle(*(self._apply_share(*share) for share in shares if share[0]))
        BATCH_TICKS.observe(len(ticks))
        now = datetime.now(UTC)
        observe_each(PRICE_LAG, [max(0.0, (now - t.payload.as_of).total_seconds()) for t in kept])
        for outcome, plain_decided in applied:
            for d in outcome.decisions:
                EVENTS_DECIDED.labels(d.type, str(d.status)).inc()
            for status, count in plain_decided.items():
                EVENTS_DECIDED.labels(str(EventType.PRICE_UPDATED), status).inc(count)
        if any(outcome.logged for outcome, _ in applied) and self._on_changes is not None:
            self._on_changes()

    async def _apply_share(
        self, kept: Sequence[PriceTick], superseded: Sequence[PriceTick]
    ) -> tuple[Outcome, dict[str, int]]:
        async with self._db.connection() as conn:
            return await self._apply(conn, kept, superseded)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        kept: Sequence[PriceTick],
        superseded: Sequence[PriceTick],
    ) -> tuple[Outcome, dict[str, int]]:
        """One round trip when no provider of the batch is known to have a policy (the usual
        case: policies are off until set); otherwise, or if one turns out to have a policy, a
        transaction with the checked path."""
        if not self._policies.suspects({t.provider_id for t in kept}):
            result = await apply_plain(conn, kept, superseded)  # a transaction of its own
            if not result.policed:
                return Outcome(logged=result.logged), result.decided
            self._policies.seen(result.policed, result.policed)
        async with conn.transaction():
            # Before the first write: see lock_assets.
            await prices.lock_assets(conn, {(t.provider_id, t.asset_id) for t in kept})
            return await self._apply_locked(conn, kept, superseded)

    async def _apply_locked(
        self,
        conn: asyncpg.Connection,
        kept: Sequence[PriceTick],
        superseded: Sequence[PriceTick],
    ) -> tuple[Outcome, dict[str, int]]:
        """Apply with the assets locked; returns the checked path's outcome (its receipts
        recorded here) and the receipts the policy-free statement wrote, per status."""
        providers = {t.provider_id for t in kept}
        suspects = self._policies.suspects(providers)
        active = await self._read_policies(conn, suspects)
        outcome = Outcome()
        plain_decided: dict[str, int] = {}
        # Each retry moves at least one provider to the checked path: bounded by their number.
        for _ in range(len(providers) + 1):
            plain = [t for t in kept if t.provider_id not in active]
            if not plain:
                break
            result = await apply_plain(
                conn, plain, [t for t in superseded if t.provider_id not in active]
            )
            if not result.policed:
                plain_decided, outcome.logged = result.decided, result.logged
                break
            # Checked from now on even if the policy was switched off meanwhile (NO_POLICY then
            # holds nothing): every retry moves a provider, so the loop ends.
            fresh = await self._read_policies(conn, result.policed)
            active.update({p: fresh.get(p, NO_POLICY) for p in result.policed})
        checked = [t for t in kept if t.provider_id in active]
        if checked:
            outcome.decisions += [
                Decision.of(t, ReceiptStatus.STALE_IGNORED, SUPERSEDED_REASON)
                for t in superseded
                if t.provider_id in active
            ]
            outcome.add(await apply_checked(conn, checked, active))
            await receipts.record_decisions(conn, outcome.decisions)
            await receipts.redecide_price_ticks(conn, outcome.redecisions)
        return outcome, plain_decided

    async def _read_policies(
        self, conn: asyncpg.Connection, provider_ids: Collection[str]
    ) -> dict[str, PricePolicy]:
        if not provider_ids:
            return {}
        active = await prices.policies(conn, provider_ids)
        self._policies.seen(provider_ids, active)
        return active

    async def note_dead_lettered(
        self, events: Sequence[RawPriceUpdated | AnyEvent], reason: str
    ) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
