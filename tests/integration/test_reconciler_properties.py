"""Property: random upserts, patches and deletes, with duplicates, delivered in random orders and
batches by concurrent workers, end in the in-order state, and their receipts are those of the
documented semantics for some serial order of the batches (docs/architecture.md, "Patches").

What each example checks, against the independent model in `tests/support/asset_model.py`:
1. every event has exactly one decided receipt, and one `asset_changes` entry per `applied` one;
2. the stored state equals the in-order fold of every event not `rejected` (and, when the events
   are delivered one by one in version order, of every event);
3. each asset's receipts equal the model's for some interleaving of the workers' batches (the
   per-asset commit order, which a test cannot observe); with one worker, for the actual order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.platform.db import Database
from rwasync.reconciler.apply import AssetApplier
from rwasync.schema.versions import event_version
from tests.support.asset_model import AssetEvent, Model, State, fold
from tests.support.events import at, deleted, patched, upserted
from tests.support.wire import ThroughTheWire

pytestmark = pytest.mark.integration

PROVIDER = "prv_test"

PATCHES: list[dict[str, Any]] = [
    {"description": "patched"},
    {"description": None},
    {"name": "Renamed A"},
    {"name": "Renamed B", "description": "renamed"},
    {"rental": {"units_rented": 3}},  # valid only onto a document with units_total >= 3
    {"status": "bogus"},  # never valid
    {"status": "sold"},
]


@st.composite
def histories(draw: st.DrawFn) -> list[AssetEvent]:
    """Events of up to two assets, patches the likeliest; `updated_at` from a small range so
    that ties happen."""
    count = draw(st.integers(2, 14))
    events: list[AssetEvent] = []
    for i in range(count):
        asset = draw(st.sampled_from(["a1", "a1", "a2"]))
        moment = at(draw(st.integers(0, 5)))
        accepted = at(100 + i)
        kind = draw(st.sampled_from(["upsert", "upsert", "patch", "patch", "patch", "delete"]))
        if kind == "upsert":
            events.append(
                upserted(
                    PROVIDER,
                    asset,
                    moment,
                    accepted_at=accepted,
                    description=draw(st.sampled_from(["one", "two"])),
                    rental={"units_total": draw(st.sampled_from([2, 5]))},
                )
            )
        elif kind == "patch":
            patch = draw(st.sampled_from(PATCHES))
            events.append(patched(PROVIDER, asset, moment, patch, accepted_at=accepted))
        else:
            events.append(deleted(PROVIDER, asset, moment, accepted_at=accepted))
    return events


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[AssetEvent], list[list[list[AssetEvent]]]]:
    """A history, and its delivery: with redeliveries, shuffled, cut into batches, the batches
    dealt to one to three workers (each applies its own batches one after another)."""
    events = draw(histories())
    repeats = draw(st.lists(st.sampled_from(events), max_size=4))
    delivered = draw(st.permutations([*events, *repeats]))
    cuts = sorted(draw(st.sets(st.integers(1, len(delivered) - 1), max_size=4)))
    batches = [delivered[a:b] for a, b in itertools.pairwise([0, *cuts, len(delivered)])]
    workers = draw(st.integers(1, 3))
    dealt: list[list[list[AssetEvent]]] = [[] for _ in range(workers)]
    for batch in batches:
        dealt[draw(st.integers(0, workers - 1))].append(batch)
    return events, dealt


async def _reset(db: Database) -> None:
    await db.execute("TRUNCATE assets, event_receipts, asset_changes")


async def _stored(db: Database) -> dict[str, tuple[Any, ...]]:
    rows = await db.fetch(
        """SELECT asset_id, updated_at, deleted, accepted_at, event_id, document,
                  encode(content_hash, 'hex') AS content_hash
           FROM asset_state WHERE provider_id = $1""",
        PROVIDER,
    )
    return {
        r["asset_id"]: (
            r["updated_at"],
            r["deleted"],
            r["accepted_at"],
            str(r["event_id"]),
            None if r["deleted"] else r["document"],
            None if r["deleted"] else r["content_hash"],
        )
        for r in rows
    }


def _expected(state: State | None) -> tuple[Any, ...] | None:
    if state is None:
        return None
    v = state.version
    return (v.updated_at, state.deleted, v.accepted_at, v.event_id, state.document, state.live_hash)


async def _receipts(db: Database) -> dict[str, str]:
    rows = await db.fetch("SELECT event_id, status FROM event_receipts")
    return {str(r["event_id"]): r["status"] for r in rows}


def _interleavings(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """Every merge of the sequences that keeps each one's own order."""
    live = [list(s) for s in sequences if s]
    if not live:
        return [[]]
    merged: list[list[int]] = []
    for i, seq in enumerate(live):
        rest = [*live[:i], seq[1:], *live[i + 1 :]]
        merged.extend([seq[0], *tail] for tail in _interleavings(rest))
    return merged


def _serial_order_explains(
    asset: str, dealt: list[list[list[AssetEvent]]], receipts: dict[str, str]
) -> bool:
    batches = [b for worker in dealt for b in worker]
    index = {id(b): i for i, b in enumerate(batches)}
    touching = [
        [index[id(b)] for b in worker if any(e.asset_id == asset for e in b)] for worker in dealt
    ]
    mine = {str(e.event_id) for b in batches for e in b if e.asset_id == asset}
    observed = {k: v for k, v in receipts.items() if k in mine}
    for order in _interleavings(touching):
        model = Model()
        for i in order:
            model.deliver([e for e in batches[i] if e.asset_id == asset])
        if model.decided == observed:
            return True
    return False


def _applier(db: Database, decoding: str) -> AssetApplier | ThroughTheWire:
    """The applier, handed the models as they are, or the raw events the reconciler's consumer
    decodes from the same events sent as a broker message."""
    return ThroughTheWire(AssetApplier(db)) if decoding == "raw" else AssetApplier(db)


DECODINGS = pytest.mark.parametrize("decoding", ["models", "raw"])


async def _deliver(
    applier: AssetApplier | ThroughTheWire, dealt: list[list[list[AssetEvent]]]
) -> None:
    async def worker(batches: list[list[AssetEvent]]) -> None:
        for batch in batches:
            await applier.apply(batch)

    await asyncio.gather(*(worker(w) for w in dealt))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
@DECODINGS
async def test_any_order_any_split_any_concurrency_ends_in_the_in_order_state(
    db: Database,
    provider_id: str,
    delivery: tuple[list[AssetEvent], list[list[list[AssetEvent]]]],
    decoding: str,
) -> None:
    events, dealt = delivery
    await _reset(db)
    await _deliver(_applier(db, decoding), dealt)

    receipts = await _receipts(db)
    assert set(receipts) == {str(e.event_id) for e in events}
    assert "accepted" not in receipts.values()
    applied = await db.fetchval("SELECT count(*) FROM asset_changes")
    assert applied == sum(1 for status in receipts.values() if status == "applied")

    taking_effect = [e for e in events if receipts[str(e.event_id)] != "rejected"]
    stored = await _stored(db)
    for asset in {e.asset_id for e in events}:
        expected = _expected(fold(e for e in taking_effect if e.asset_id == asset))
        assert stored.get(asset) == expected, asset
        assert _serial_order_explains(asset, dealt, receipts), asset


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=histories())
@DECODINGS
async def test_delivered_in_version_order_one_by_one_it_is_the_in_order_result(
    db: Database, provider_id: str, events: list[AssetEvent], decoding: str
) -> None:
    await _reset(db)
    applier = _applier(db, decoding)
    model = Model()
    for event in sorted(events, key=event_version):
        await applier.apply([event])
        model.deliver([event])
    assert await _receipts(db) == model.decided
    stored = await _stored(db)
    for asset in {e.asset_id for e in events}:
        assert stored.get(asset) == _expected(fold(e for e in events if e.asset_id == asset))
