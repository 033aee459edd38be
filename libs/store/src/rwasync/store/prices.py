"""Price series statements that pricing and the operator CLI share: the per-asset locks, the
providers' sanity policies, re-running the hold rule over an asset's ticks, and moving the latest
price (with its entry in the change log that the investor stream reads).

Pricing runs them while applying ticks of a provider that has a policy; the CLI runs them when an
operator releases a held tick (the ticks after it are checked again against it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from rwasync.platform.db import LockSpace, lock_stripes
from rwasync.schema.events import ReceiptStatus
from rwasync.schema.price_holds import (
    NO_POLICY,
    HoldKind,
    PricePolicy,
    SeriesTick,
    TickState,
    changed,
    evaluate_series,
)
from rwasync.store.receipts import Redecision

# (provider_id, asset_id)
AssetKey = tuple[str, str]

# Advisory-lock stripes over the price keys: at most this many locks per transaction.
LOCK_STRIPES: Final = 128


async def lock_assets(conn: asyncpg.Connection, keys: Iterable[AssetKey]) -> None:
    """Serialise writers of these assets' prices (replicas, the CLI) until the transaction ends.
    Taken before the first write, so that per asset, transaction ids follow commit order."""
    await lock_stripes(conn, [f"{p}/{a}" for p, a in keys], LockSpace.PRICES, LOCK_STRIPES)


POLICIES: Final = """
SELECT provider_id, max_jump, currency_check FROM price_policies WHERE provider_id = ANY($1::text[])
"""


async def policies(conn: asyncpg.Connection, provider_ids: Iterable[str]) -> dict[str, PricePolicy]:
    """The active policies of these providers (providers without one are absent)."""
    rows = await conn.fetch(POLICIES, sorted(set(provider_ids)))
    found = {
        r["provider_id"]: PricePolicy(max_jump=r["max_jump"], currency_check=r["currency_check"])
        for r in rows
    }
    return {provider_id: policy for provider_id, policy in found.items() if policy.active}


# The currency of each asset, from the reconciler's documented `asset_state` view: its price's,
# else its valuation's. An asset without a document or without either has none.
ASSET_CURRENCIES: Final = """
SELECT s.provider_id, s.asset_id,
       coalesce(s.document #>> '{price,currency}', s.document #>> '{valuation,currency}')
           AS currency
FROM asset_state s
JOIN unnest($1::text[], $2::text[]) AS k(provider_id, asset_id)
  ON s.provider_id = k.provider_id AND s.asset_id = k.asset_id
"""


async def asset_currencies(
    conn: asyncpg.Connection, keys: Iterable[AssetKey]
) -> dict[AssetKey, str]:
    keys = sorted(set(keys))
    rows = await conn.fetch(ASSET_CURRENCIES, [k[0] for k in keys], [k[1] for k in keys])
    return {
        (r["provider_id"], r["asset_id"]): r["currency"] for r in rows if r["currency"] is not None
    }


# For each asset: the last visible tick before `from`, then every tick from `from` on. A tick
# with no visible tick before it is measured from the two that can be shown after it
# (`outlier_hold`), so `from` moves back to the series' start (-infinity: no reference, every
# tick) unless the first visible tick and two more that can be shown lie before it: only then are
# the ticks up to the first visible one, and so everything before `from`, beyond its reach.
SERIES_FROM: Final = """
WITH k AS (
    SELECT k.provider_id, k.asset_id,
           CASE WHEN (
               SELECT count(*) FROM (
                   SELECT 1 FROM price_history h
                   WHERE h.provider_id = k.provider_id AND h.asset_id = k.asset_id
                     AND h.as_of >= f.as_of AND h.as_of < k.from_as_of
                     AND h.state <> 'rejected'
                     AND (h.state = 'released' OR h.hold_kind IS DISTINCT FROM 'currency')
                   ORDER BY h.as_of LIMIT 3
               ) ahead
           ) = 3 THEN k.from_as_of ELSE '-infinity'::timestamptz END AS from_as_of
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(provider_id, asset_id, from_as_of)
    LEFT JOIN LATERAL (
        SELECT h.as_of FROM price_history h
        WHERE h.provider_id = k.provider_id AND h.asset_id = k.asset_id
          AND h.state IN ('visible', 'released')
        ORDER BY h.as_of LIMIT 1
    ) f ON true
)
SELECT k.provider_id, k.asset_id, t.reference, t.as_of, t.amount, t.currency, t.event_id,
       t.state, t.hold_kind, t.hold_reason, t.policed
FROM k
CROSS JOIN LATERAL (
    (SELECT true AS reference, h.as_of, h.amount, h.currency, h.event_id, h.state, h.hold_kind,
            h.hold_reason, h.policed
     FROM price_history h
     WHERE h.provider_id = k.provider_id AND h.asset_id = k.asset_id
       AND h.as_of < k.from_as_of AND h.state IN ('visible', 'released')
     ORDER BY h.as_of DESC LIMIT 1)
    UNION ALL
    (SELECT false, h.as_of, h.amount, h.currency, h.event_id, h.state, h.hold_kind, h.hold_reason,
            h.policed
     FROM price_history h
     WHERE h.provider_id = k.provider_id AND h.asset_id = k.asset_id AND h.as_of >= k.from_as_of)
) AS t
ORDER BY k.provider_id, k.asset_id, t.reference DESC, t.as_of
"""

WRITE_STATES: Final = """
UPDATE price_history h
SET state = u.state, hold_kind = u.hold_kind, hold_reason = u.hold_reason,
    held_at = CASE WHEN u.state = 'held' THEN coalesce(h.held_at, now()) END
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
     AS u(provider_id, asset_id, as_of, state, hold_kind, hold_reason)
WHERE h.provider_id = u.provider_id AND h.asset_id = u.asset_id AND h.as_of = u.as_of
"""


@dataclass(frozen=True, slots=True)
class StateChange:
    """A stored tick whose hold state the rule changed."""

    provider_id: str
    asset_id: str
    tick: SeriesTick


def _series_tick(row: asyncpg.Record) -> SeriesTick:
    return SeriesTick(
        as_of=row["as_of"],
        amount=row["amount"],
        currency=row["currency"],
        event_id=str(row["event_id"]),
        state=TickState(row["state"]),
        hold_kind=HoldKind(row["hold_kind"]) if row["hold_kind"] else None,
        hold_reason=row["hold_reason"],
        settled=not row["policed"],
    )


async def reevaluate(
    conn: asyncpg.Connection,
    starts: Mapping[AssetKey, datetime],
    policies: Mapping[str, PricePolicy],
) -> list[StateChange]:
    """Run the hold rule over each asset's stored ticks from its start on (after the last visible
    tick before it; from the series' first tick when the start is within reach of the rule for
    ticks with no visible one before them), store the states that changed and return them. Call
    with the assets locked."""
    keys = sorted(starts)
    rows = await conn.fetch(
        SERIES_FROM, [k[0] for k in keys], [k[1] for k in keys], [starts[k] for k in keys]
    )
    references: dict[AssetKey, SeriesTick] = {}
    series: dict[AssetKey, list[SeriesTick]] = {}
    for row in rows:
        key = (row["provider_id"], row["asset_id"])
        if row["reference"]:
            references[key] = _series_tick(row)
        else:
            series.setdefault(key, []).append(_series_tick(row))
    changes = [
        StateChange(key[0], key[1], tick)
        for key, ticks in series.items()
        for tick in changed(
            ticks, evaluate_series(references.get(key), ticks, policies.get(key[0], NO_POLICY))
        )
    ]
    if changes:
        await conn.execute(
            WRITE_STATES,
            [c.provider_id for c in changes],
            [c.asset_id for c in changes],
            [c.tick.as_of for c in changes],
            [str(c.tick.state) for c in changes],
            [str(c.tick.hold_kind) if c.tick.hold_kind else None for c in changes],
            [c.tick.hold_reason for c in changes],
        )
    return changes


# Sets each asset's latest price to its newest visible tick (or removes it when none is left),
# and logs a change for the stream when amount, currency or as_of moved. Unlike the guarded
# upsert of the policy-free path this may move back in as_of: a hold can withdraw the newest tick.
REFRESH_LATEST: Final = """
WITH keys AS (
    SELECT DISTINCT provider_id, asset_id
    FROM unnest($1::text[], $2::text[]) AS k(provider_id, asset_id)
),
newest AS (
    SELECT k.provider_id, k.asset_id, n.amount, n.currency, n.as_of, n.accepted_at, n.event_id
    FROM keys k
    LEFT JOIN LATERAL (
        SELECT h.amount, h.currency, h.as_of, h.accepted_at, h.event_id
        FROM price_history h
        WHERE h.provider_id = k.provider_id AND h.asset_id = k.asset_id
          AND h.state IN ('visible', 'released')
        ORDER BY h.as_of DESC LIMIT 1
    ) n ON true
),
prior AS (
    SELECT p.provider_id, p.asset_id, p.amount, p.currency, p.as_of
    FROM asset_prices p JOIN keys k USING (provider_id, asset_id)
),
removed AS (
    DELETE FROM asset_prices p USING newest n
    WHERE p.provider_id = n.provider_id AND p.asset_id = n.asset_id AND n.as_of IS NULL
),
written AS (
    INSERT INTO asset_prices AS p
        (provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, applied_at)
    SELECT provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, now()
    FROM newest WHERE as_of IS NOT NULL
    ON CONFLICT (provider_id, asset_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, as_of = EXCLUDED.as_of,
        accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id,
        applied_at = EXCLUDED.applied_at
    WHERE (p.amount, p.currency, p.as_of, p.accepted_at, p.event_id)
          IS DISTINCT FROM
          (EXCLUDED.amount, EXCLUDED.currency, EXCLUDED.as_of, EXCLUDED.accepted_at,
           EXCLUDED.event_id)
    RETURNING p.provider_id, p.asset_id, p.amount, p.currency, p.as_of, p.accepted_at
),
logged AS (
    INSERT INTO price_changes (provider_id, asset_id, amount, currency, as_of, accepted_at)
    SELECT w.provider_id, w.asset_id, w.amount, w.currency, w.as_of, w.accepted_at
    FROM written w LEFT JOIN prior o USING (provider_id, asset_id)
    WHERE o.asset_id IS NULL OR (w.amount, w.currency, w.as_of)
                                IS DISTINCT FROM (o.amount, o.currency, o.as_of)
    RETURNING 1
)
SELECT n.provider_id, n.asset_id, n.event_id, (SELECT count(*) FROM logged) AS logged
FROM newest n
"""


@dataclass(frozen=True)
class LatestRefresh:
    """The event now holding each asset's latest price (None: no visible tick) and how many
    changes were logged for the stream."""

    latest: dict[AssetKey, str | None]
    logged: int


async def refresh_latest(conn: asyncpg.Connection, keys: Iterable[AssetKey]) -> LatestRefresh:
    keys = sorted(set(keys))
    rows = await conn.fetch(REFRESH_LATEST, [k[0] for k in keys], [k[1] for k in keys])
    return LatestRefresh(
        latest={
            (r["provider_id"], r["asset_id"]): str(r["event_id"]) if r["event_id"] else None
            for r in rows
        },
        logged=int(rows[0]["logged"]) if rows else 0,
    )


def starts_of(ticks: Iterable[tuple[str, str, datetime]]) -> dict[AssetKey, datetime]:
    """The earliest as_of per asset among (provider_id, asset_id, as_of) entries."""
    starts: dict[AssetKey, datetime] = {}
    for provider_id, asset_id, as_of in ticks:
        key = (provider_id, asset_id)
        if key not in starts or as_of < starts[key]:
            starts[key] = as_of
    return starts


def redecisions(
    changes: Iterable[StateChange], latest: Mapping[AssetKey, str | None]
) -> list[Redecision]:
    """The receipts of stored ticks whose hold state changed: `held` with its reason, or
    `applied` (and whether the tick now holds its asset's latest price)."""
    moved = []
    for change in changes:
        tick = change.tick
        if tick.state is TickState.HELD:
            moved.append(Redecision(uuid.UUID(tick.event_id), ReceiptStatus.HELD, tick.hold_reason))
        else:
            is_latest = latest.get((change.provider_id, change.asset_id)) == tick.event_id
            moved.append(
                Redecision(uuid.UUID(tick.event_id), ReceiptStatus.APPLIED, None, is_latest)
            )
    return moved
