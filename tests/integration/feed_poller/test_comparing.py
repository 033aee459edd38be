"""The snapshot comparison's passes over the database (`rwasync.feed_poller.comparing`): what they
count in SQL and what they walk row by row."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.feed_poller import queries
from rwasync.feed_poller.comparing import Settled, decisions, plan
from rwasync.feeds.snapshot import Action, Comparison, Tally
from rwasync.platform.db import Database

pytestmark = pytest.mark.integration

OLD, NEW = b"\x01" * 32, b"\x02" * 32
STORED_AT = datetime(2025, 5, 1, tzinfo=UTC)
ITEM_AT = datetime(2025, 5, 15, tzinfo=UTC)
SNAPSHOT = datetime(2025, 6, 1, tzinfo=UTC)
RUN = "run_comparing"


async def _store(db: Database, provider_id: str, asset_id: str, *, deleted: bool = False) -> None:
    """An asset as the reconciler left it, its content hashed OLD (a tombstone keeps its hash)."""
    await db.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at)
           VALUES ($1, $2, $3, $4, $3, gen_random_uuid(), 'feed', $5, $6, 'active', now())""",
        provider_id,
        asset_id,
        STORED_AT,
        deleted,
        {"id": asset_id},
        OLD,
    )


async def _stage(
    db: Database, asset_id: str, index: int, content_hash: bytes | None, **extra: object
) -> None:
    """A valid staged item: by default one matched by fingerprint (no document, no price)."""
    row = {
        "run_id": RUN, "asset_id": asset_id, "item_index": index, "valid": True,
        "fingerprint": bytes([index]) * 16, "updated_at": ITEM_AT, "content_hash": content_hash,
        "document": None, "price_amount": None, "price_currency": None, "price_as_of": None,
        **extra,
    }  # fmt: skip
    columns = ", ".join(queries.STAGED_COLUMNS)
    places = ", ".join(f"${n}" for n in range(1, len(queries.STAGED_COLUMNS) + 1))
    await db.execute(
        f"INSERT INTO feed_run_items ({columns}) VALUES ({places})",
        *(row[c] for c in queries.STAGED_COLUMNS),
    )


async def test_the_passes_count_settled_assets_and_walk_only_the_rest(
    db: Database, provider_id: str
) -> None:
    """An asset listed once, validly, with its stored live content and no price is settled in
    SQL: counted unchanged (and live), never walked. Every other case is still decided row by
    row: a price to publish, a change, a duplicate, a tombstone listed again, a new asset, a
    stored asset the feed no longer lists."""
    for asset_id in ("same", "priced", "changed", "twice", "gone", "broken"):
        await _store(db, provider_id, asset_id)
    await _store(db, provider_id, "dead", deleted=True)
    document = b'{"id":"x"}'
    await _stage(db, "same", 0, OLD)
    await _stage(db, "priced", 1, OLD, document=document, price_amount=Decimal("5"),
                 price_currency="USD")  # fmt: skip
    await _stage(db, "changed", 2, NEW, document=document)
    await _stage(db, "twice", 3, OLD)
    await _stage(db, "twice", 4, OLD)
    await _stage(db, "dead", 5, OLD)
    await _stage(db, "new", 6, NEW, document=document)
    await _stage(db, "broken", 7, None, valid=False, fingerprint=None, updated_at=None)
    await db.execute(queries.MARK_DUPLICATES, RUN)  # as staging ends
    comparison = Comparison(SNAPSHOT, protected_after=STORED_AT)

    settled = Settled()
    async with db.connection() as conn:
        walked = {
            decision.asset_id: decision.action
            async for decision, _ in decisions(
                conn,
                run_id=RUN,
                provider_id=provider_id,
                comparison=comparison,
                settled=settled,
            )
        }
        planned = await plan(
            conn, run_id=RUN, provider_id=provider_id, comparison=comparison, keep=10
        )
        plan_walk = {
            r["asset_id"] for r in await conn.fetch(queries.JOINED_FOR_PLAN, RUN, provider_id)
        }
    assert settled.count == 1
    assert walked == {
        "priced": Action.UNCHANGED,
        "changed": Action.UPDATE,
        "twice": Action.UNCHANGED,
        "dead": Action.CREATE,
        "new": Action.CREATE,
        "gone": Action.DELETE,
        "broken": Action.NONE,
    }
    # The plan pass walks only what can be deleted or duplicated, and counts the live assets.
    assert plan_walk == {"twice", "gone", "broken"}
    assert (planned.deletions, planned.live, planned.superseded) == (1, 6, [(3, "twice", 4)])


async def test_the_passes_read_the_run_once_whatever_the_statistics(
    db: Database, provider_id: str
) -> None:
    """When the passes run, the run's staged rows are not in the statistics yet: the planner
    takes them for one row. A per-row test against the run's other rows (made into a join, it once
    read every row of the run for each of them, and a 100,000-asset comparison never ended) is a
    column now (`duplicated`, set once as staging ends): no pass reads the run's rows twice. (The
    subplans allowed probe by index: the provider's other feeds' snapshots, `o`, for the stored
    assets the run does not list, and the feed's previous `ok` snapshot, `q`, for an unchanged
    item with a price.)"""
    await db.execute(
        "INSERT INTO feed_run_items (run_id, asset_id, item_index, valid)"
        " SELECT 'run_before', 'a' || g, g, true FROM generate_series(1, 2000) AS g"
    )
    await db.execute("ANALYZE feed_run_items")
    await db.execute(
        "INSERT INTO feed_run_items (run_id, asset_id, item_index, valid)"
        " SELECT $1, 'a' || (g % 1500), g, true FROM generate_series(1, 2000) AS g",
        RUN,
    )
    await db.execute(queries.MARK_DUPLICATES, RUN)
    flagged = await db.fetchval(
        "SELECT count(*) FROM feed_run_items WHERE run_id = $1 AND duplicated", RUN
    )
    assert flagged == 1000  # ids 'a0'..'a499' twice each
    for query in (queries.COUNT_SETTLED, queries.JOINED_FOR_PLAN, queries.JOINED_FOR_PUBLISH):
        plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + query, RUN, provider_id))
        siblings = plan.count(" on feed_run_items o ")
        previous = plan.count(" on feed_run_items q ")
        assert plan.count(" on feed_run_items") - siblings - previous == 1, plan
        assert plan.count("SubPlan") == siblings + previous <= 2, plan
        if previous:
            probe = (
                r"Index Cond: \(\(run_id = \$\d+\) AND \(asset_id = feed_run_items\.asset_id\)\)"
            )
            assert re.search(probe, plan), plan


_ids = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_stored_assets = st.dictionaries(
    _ids,
    st.tuples(
        st.booleans(),  # deleted
        st.sampled_from(["feed", "push", "batch"]),
        st.sampled_from([STORED_AT, SNAPSHOT + timedelta(days=1)]),  # updated_at
        st.sampled_from([STORED_AT - timedelta(days=1), STORED_AT + timedelta(days=1)]),  # accepted
    ),
    max_size=6,
)
_staged_items = st.lists(
    st.tuples(_ids, st.booleans(), st.sampled_from([OLD, NEW]), st.booleans()), max_size=8
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stored=_stored_assets, staged=_staged_items)
async def test_the_plan_pass_finds_what_a_walk_of_every_id_finds(
    db: Database,
    provider_id: str,
    stored: dict[str, tuple[bool, str, datetime, datetime]],
    staged: list[tuple[str, bool, bytes, bool]],
) -> None:
    """The plan pass walks only the ids that can be deleted or duplicated and counts the live
    assets in SQL: its deletions, live count and superseded duplicates are those of the whole
    comparison (every id decided, the settled ones included)."""
    run = f"run_{uuid.uuid4().hex[:12]}"
    await db.execute("DELETE FROM assets WHERE provider_id = $1", provider_id)
    for asset_id, (deleted, source, updated_at, accepted_at) in stored.items():
        await db.execute(
            """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at,
                                   event_id, source, document, content_hash, status, applied_at)
               VALUES ($1, $2, $3, $4, $5, gen_random_uuid(), $6, $7, $8, 'active', now())""",
            provider_id, asset_id, updated_at, deleted, accepted_at, source, {"id": asset_id},
            OLD,
        )  # fmt: skip
    for index, (asset_id, valid, content_hash, with_document) in enumerate(staged):
        await db.execute(
            f"INSERT INTO feed_run_items ({', '.join(queries.STAGED_COLUMNS)})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)",
            run, asset_id, index, valid, bytes([index]) * 16 if valid else None,
            ITEM_AT if valid else None, content_hash if valid else None,
            b"{}" if valid and with_document else None,
        )  # fmt: skip
    await db.execute(queries.MARK_DUPLICATES, run)
    comparison = Comparison(SNAPSHOT, protected_after=STORED_AT)
    whole = Tally(keep=100)
    settled = Settled()
    async with db.connection() as conn:
        async for decision, listing in decisions(
            conn, run_id=run, provider_id=provider_id, comparison=comparison, settled=settled
        ):
            whole.add(decision, listing.stored)
        planned = await plan(
            conn, run_id=run, provider_id=provider_id, comparison=comparison, keep=100
        )
    assert planned.deletions == whole.deletions
    assert planned.live == whole.live + settled.count
    assert planned.superseded == whole.superseded
