"""Migration 0028's apply (`price_apply_tick_batch_2`, 0017's with `policed` named) writes by
what its statement read instead of upserting; it must decide exactly as 0016's
`price_apply_ticks`, which processes of the previous release still call: the same latest prices,
history (with hold states), receipts, change log and answer, for any batches — corrections and
duplicates at one as_of, older ticks, redeliveries, receipts recorded before the tick or not at
all, stored held and rejected entries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.platform.db import Database, LockSpace
from rwasync.pricing import queries
from rwasync.pricing.apply import apply_arguments
from rwasync.pricing.ticks import latest_per_as_of
from rwasync.schema.events import PriceUpdated
from rwasync.store import prices, receipts
from tests.support.events import at, price

pytestmark = pytest.mark.integration

NEW = queries.APPLY_PLAIN
OLD = NEW.replace("price_apply_tick_batch_2(", "price_apply_ticks(")
AMOUNTS = ["100", "100.0", "101", "250"]


async def state(db: Database) -> dict[str, Any]:
    """Everything the apply writes, but the instants it stamps (now()) and the log's ids."""
    latest = await db.fetch(
        "SELECT provider_id, asset_id, amount, currency, as_of, accepted_at, event_id"
        " FROM asset_prices ORDER BY 1, 2"
    )
    history = await db.fetch(
        "SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id, state,"
        " hold_kind, hold_reason, held_at FROM price_history ORDER BY 1, 2, 3"
    )
    receipts_ = await db.fetch(
        "SELECT event_id, provider_id, asset_id, type, status, reason, latest, accepted_at,"
        " trace_id, decided_at IS NULL AS undecided FROM event_receipts ORDER BY event_id"
    )
    changes = await db.fetch(
        "SELECT provider_id, asset_id, amount, currency, as_of, accepted_at FROM price_changes"
        " ORDER BY xid, change_id"
    )
    return {
        "latest": [tuple(r) for r in latest],
        "history": [tuple(r) for r in history],
        "receipts": [tuple(r) for r in receipts_],
        "changes": [tuple(r) for r in changes],
    }


async def run(
    db: Database,
    statement: str,
    stored: list[tuple[PriceUpdated, str]],
    batches: list[list[PriceUpdated]],
    recorded: set[int],
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    await db.execute("TRUNCATE asset_prices, price_history, event_receipts, price_changes")
    for n, (tick, hold) in enumerate(stored):
        # A held or rejected entry left by the checked path or an operator, and its receipt.
        await db.execute(
            "INSERT INTO price_history (provider_id, asset_id, as_of, amount, currency,"
            " accepted_at, event_id, state, hold_kind, hold_reason, held_at)"
            " VALUES ($1, $2, $3, $4, 'USD', $5, $6, $7, 'jump', 'a jump', $8)",
            tick.provider_id,
            tick.asset_id,
            tick.payload.as_of,
            tick.payload.amount,
            tick.accepted_at,
            tick.event_id,
            hold,
            at(200 + n),
        )
        await db.execute(
            "INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, reason,"
            " accepted_at) VALUES ($1, $2, $3, 'price.updated', $4, 'a jump', $5)",
            tick.event_id,
            tick.provider_id,
            tick.asset_id,
            hold,
            tick.accepted_at,
        )
    answers = []
    for batch in batches:
        await receipts.record_accepted(
            db.pool, [t for t in batch if batch_index(batches, t) in recorded]
        )
        kept, superseded = latest_per_as_of(batch)
        row = await db.fetchrow(
            statement,
            *apply_arguments(kept, superseded),
            int(LockSpace.PRICES),
            prices.LOCK_STRIPES,
        )
        assert row is not None
        answers.append(tuple(row))
    return await state(db), answers


def batch_index(batches: list[list[PriceUpdated]], tick: PriceUpdated) -> int:
    return [t.event_id for b in batches for t in b].index(tick.event_id)


specs = st.lists(
    st.tuples(
        st.sampled_from(["a1", "a2", "a3"]),
        st.integers(0, 5),  # as_of minute: equal as_of is frequent (corrections, duplicates)
        st.sampled_from(AMOUNTS),
        st.integers(0, 30),  # accepted_at minute: later or earlier than as_of, ties too
        st.sampled_from(["", "trace-a", "trace-b"]),
    ),
    min_size=1,
    max_size=20,
)
stored_entries = st.lists(
    st.tuples(
        st.sampled_from(["a1", "a2"]),
        st.integers(0, 5),
        st.sampled_from(AMOUNTS),
        st.sampled_from(["held", "rejected"]),
    ),
    max_size=3,
    unique_by=lambda s: (s[0], s[1]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ticks=specs, stored=stored_entries, data=st.data())
async def test_the_batch_apply_decides_as_the_upserting_one(
    db: Database,
    provider_id: str,
    ticks: list[tuple[str, int, str, int, str]],
    stored: list[tuple[str, int, str, str]],
    data: st.DataObject,
) -> None:
    made = [
        price(provider_id, asset, amount, at(minute), accepted_at=at(10 + accepted)).model_copy(
            update={"trace_id": trace}
        )
        for asset, minute, amount, accepted, trace in ticks
    ]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(made)), max_size=3), label="cuts"))
    batches = [made[a:b] for a, b in zip([0, *cuts], [*cuts, len(made)], strict=False)]
    batches = [b for b in batches if b]
    # A redelivery: everything again, decided already.
    batches.append(data.draw(st.permutations(made), label="redelivery"))
    recorded = data.draw(st.sets(st.integers(0, len(made) - 1)), label="receipts recorded first")
    entries = [
        (price(provider_id, asset, amount, at(minute), accepted_at=at(minute) - timedelta(1)), hold)
        for asset, minute, amount, hold in stored
    ]

    old = await run(db, OLD, entries, batches, recorded)
    new = await run(db, NEW, entries, batches, recorded)
    assert new == old


async def test_a_tick_whose_receipt_is_not_recorded_yet_is_decided_all_the_same(
    db: Database, provider_id: str
) -> None:
    """ingest-api may record a tick's `accepted` receipt after the apply read the receipts (or
    not yet at all): the upsert behind the update by key writes the decided receipt then, and
    ingest-api's late insert leaves it."""
    tick = price(provider_id, "a1", "10", at(1))
    row = await db.fetchrow(
        NEW, *apply_arguments([tick], []), int(LockSpace.PRICES), prices.LOCK_STRIPES
    )
    assert row is not None and list(row["statuses"]) == ["applied"]
    await receipts.record_accepted(db.pool, [tick])  # too late: it finds the decided row
    status = await db.fetchval(
        "SELECT status FROM event_receipts WHERE event_id = $1", tick.event_id
    )
    assert status == "applied"
