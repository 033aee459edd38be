"""What applying a batch of ticks shares between the two paths (with and without sanity
holds): the batch reduction, the statement arguments, and the receipts a batch decides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from rwasync.schema.events import ReceiptStatus
from rwasync.schema.raw_events import PriceTick
from rwasync.schema.versions import newest_per_key
from rwasync.store.receipts import Decision, Redecision

STALE_REASON = "a later-accepted price for the same as_of is stored"
REPLACED_REASON = "replaced by a later-accepted price for the same as_of"


def latest_per_as_of(
    ticks: Sequence[PriceTick],
) -> tuple[list[PriceTick], list[PriceTick]]:
    """One tick per (asset, as_of): the later-accepted wins; the others are superseded."""
    return newest_per_key(
        ticks,
        key=lambda t: (t.provider_id, t.asset_id, t.payload.as_of),
        order=lambda t: (t.accepted_at, str(t.event_id)),
        identity=lambda t: t.event_id,
    )


def tick_columns(
    ticks: Sequence[PriceTick], holds: Sequence[tuple[str, str | None, str | None]]
) -> tuple[list[object], ...]:
    """The first arguments of RECORD_TICKS / APPLY_TICKS: the ticks, the state each is recorded
    in, and their trace ids (for the receipts APPLY_TICKS writes)."""
    return (
        [t.provider_id for t in ticks],
        [t.asset_id for t in ticks],
        [t.payload.as_of for t in ticks],
        [t.payload.amount for t in ticks],
        [t.payload.currency for t in ticks],
        [t.accepted_at for t in ticks],
        [t.event_id for t in ticks],
        [h[0] for h in holds],
        [h[1] for h in holds],
        [h[2] for h in holds],
        [t.trace_id for t in ticks],
    )


@dataclass
class Outcome:
    """What one transaction decided: receipts, receipts that move, changes logged."""

    decisions: list[Decision] = field(default_factory=list)
    redecisions: list[Redecision] = field(default_factory=list)
    logged: int = 0

    def add(self, other: Outcome) -> None:
        self.decisions += other.decisions
        self.redecisions += other.redecisions
        self.logged += other.logged


def recorded(row: asyncpg.Record, tick: PriceTick, outcome: Outcome) -> ReceiptStatus:
    """The receipt of a tick RECORD_TICKS did not write (stale) or only re-stamped (duplicate);
    returns the row's outcome. The tick that now carries a stored held entry (a replacement, or
    a duplicate re-stamping it) takes over its hold: the one it replaced ends `stale_ignored`."""
    status = ReceiptStatus(row["outcome"])
    took_over_a_hold = status is not ReceiptStatus.STALE_IGNORED and row["stored_state"] == "held"
    if took_over_a_hold:
        outcome.redecisions.append(
            Redecision(row["stored_event_id"], ReceiptStatus.STALE_IGNORED, REPLACED_REASON)
        )
    if status is ReceiptStatus.STALE_IGNORED:
        outcome.decisions.append(Decision.of(tick, status, STALE_REASON))
    elif status is ReceiptStatus.DUPLICATE and took_over_a_hold:
        outcome.decisions.append(Decision.of(tick, ReceiptStatus.HELD, row["stored_reason"]))
    elif status is ReceiptStatus.DUPLICATE:
        outcome.decisions.append(Decision.of(tick, status))
    return status
