"""Applying ticks of providers with a sanity policy: record them (a currency hold decided now),
run the hold rule over each touched asset from its earliest new tick on, refresh the latest price
from what is visible, and say what every receipt becomes — including those of stored ticks whose
hold a late tick lifted or imposed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from rwasync.pricing import queries
from rwasync.pricing.ticks import Outcome, recorded, tick_columns
from rwasync.schema.events import ReceiptStatus
from rwasync.schema.price_holds import HoldKind, PricePolicy, TickState, currency_hold
from rwasync.schema.raw_events import PriceTick
from rwasync.store import prices
from rwasync.store.receipts import Decision


async def apply_checked(
    conn: asyncpg.Connection,
    ticks: Sequence[PriceTick],
    policies: Mapping[str, PricePolicy],
) -> Outcome:
    checking = [t for t in ticks if policies[t.provider_id].currency_check]
    currencies = await prices.asset_currencies(
        conn, {(t.provider_id, t.asset_id) for t in checking}
    )
    holds: list[tuple[str, str | None, str | None]] = []
    for t in ticks:
        reason = currency_hold(
            t.payload.currency,
            currencies.get((t.provider_id, t.asset_id)),
            policies[t.provider_id],
        )
        holds.append(
            (str(TickState.VISIBLE), None, None)
            if reason is None
            else (str(TickState.HELD), str(HoldKind.CURRENCY), reason)
        )
    rows = await conn.fetch(queries.RECORD_TICKS, *tick_columns(ticks, holds))
    by_id = {t.event_id: (t, hold) for t, hold in zip(ticks, holds, strict=True)}
    outcome = Outcome()
    written: list[tuple[PriceTick, tuple[str, str | None, str | None]]] = []
    touched: list[tuple[str, str, datetime]] = []
    for row in rows:
        tick, hold = by_id[row["event_id"]]
        status = recorded(row, tick, outcome)
        if status is ReceiptStatus.APPLIED:
            written.append((tick, hold))
        if status is not ReceiptStatus.STALE_IGNORED:
            touched.append((tick.provider_id, tick.asset_id, tick.payload.as_of))
    if not touched:
        return outcome
    changes = await prices.reevaluate(conn, prices.starts_of(touched), policies)
    refresh = await prices.refresh_latest(conn, {(p, a) for p, a, _ in touched})
    outcome.logged = refresh.logged
    changed_by_id = {c.tick.event_id: c for c in changes}
    for tick, (state, _kind, reason) in written:
        change = changed_by_id.pop(str(tick.event_id), None)
        if change is not None:
            state, reason = str(change.tick.state), change.tick.hold_reason
        if state == TickState.HELD:
            outcome.decisions.append(Decision.of(tick, ReceiptStatus.HELD, reason))
        else:
            is_latest = refresh.latest.get((tick.provider_id, tick.asset_id)) == str(tick.event_id)
            outcome.decisions.append(Decision.of(tick, ReceiptStatus.APPLIED, None, is_latest))
    outcome.redecisions += prices.redecisions(changed_by_id.values(), refresh.latest)
    return outcome
