"""How much of `feed_runs` the per-run statements read once feeds have a long history: a run
must not read every earlier run of its provider's feeds (nor of every provider) to decide."""

from __future__ import annotations

from typing import Any

import orjson

from rwasync.feed_poller import queries
from rwasync.platform.db import Database
from rwasync.store.feed_preview import STORED_STATE
from tests.integration.feed_poller.harness import add_feed

# A year of hourly runs of each feed, one in ten of them `ok`.
HISTORY = 9000


def _feed_runs_rows_read(plan: Any) -> int:
    """Rows the plan's scans of `feed_runs` produced or filtered away, over all their loops."""
    total = 0
    stack = [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "feed_runs":
            per_loop = (
                node.get("Actual Rows", 0)
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            total += int(per_loop * max(1, node.get("Actual Loops", 1)))
        stack.extend(node.get("Plans", []))
    return total


async def _rows_read(db: Database, query: str, *args: Any) -> int:
    raw = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
    doc = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return _feed_runs_rows_read(doc[0]["Plan"])


async def _history(db: Database, feed_id: str, provider_id: str) -> None:
    await db.execute(
        """INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger, requested_at,
                                  started_at, compared_at, finished_at, snapshot_time,
                                  staged_items)
           SELECT $1 || '_' || g, $1, $2, CASE WHEN g % 10 = 0 THEN 'ok' ELSE 'not_modified' END,
                  'schedule', t, t, t, t + interval '5 s', t,
                  CASE WHEN g % 10 = 0 THEN 3 END
           FROM generate_series(1, $3::int) g,
                LATERAL (SELECT now() - make_interval(hours => $3::int - g)) AS x(t)""",
        feed_id,
        provider_id,
        HISTORY,
    )


async def test_comparing_reads_one_run_per_sibling_feed_not_their_whole_history(
    db: Database, provider_id: str
) -> None:
    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_other', 'Other')")
    this = await add_feed(db, provider_id, "https://feeds.example.com/a.json")
    sibling = await add_feed(db, provider_id, "https://feeds.example.com/b.json")
    others = [
        await add_feed(db, "prv_other", f"https://feeds.example.com/o{n}.json") for n in range(3)
    ]
    for feed_id in (this, sibling):
        await _history(db, feed_id, provider_id)
    for feed_id in others:
        await _history(db, feed_id, "prv_other")
    await db.execute(
        "INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger, started_at) "
        "VALUES ('run_now', $1, $2, 'running', 'schedule', now())",
        this,
        provider_id,
    )
    latest_sibling = f"{sibling}_{HISTORY - HISTORY % 10}"
    await db.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at)
           SELECT $1, 'a' || g, now(), false, now(), gen_random_uuid(), 'feed', '{}', '\\x00',
                  'active', now() FROM generate_series(1, 3) g""",
        provider_id,
    )
    await db.execute(
        "INSERT INTO feed_run_items (run_id, asset_id, item_index, valid) "
        "SELECT $1, 'a' || g, g, true FROM generate_series(1, 3) g",
        latest_sibling,
    )
    await db.execute("ANALYZE")

    # The asset only the sibling lists is kept, as before.
    rows = await db.fetch(queries.JOINED_FOR_PLAN, "run_now", provider_id)
    assert {r["asset_id"]: r["stored_listed_elsewhere"] for r in rows} == {
        "a1": True, "a2": True, "a3": True,
    }  # fmt: skip

    budget = 100  # a handful of index entries per feed, not ~5 * HISTORY
    assert await _rows_read(db, queries.JOINED_FOR_PLAN, "run_now", provider_id) < budget
    assert await _rows_read(db, queries.JOINED_FOR_PUBLISH, "run_now", provider_id) < budget
    assert await _rows_read(db, STORED_STATE, provider_id, this) < budget
    assert await _rows_read(db, queries.LAST_APPLIED_SNAPSHOT, this, "run_now") < budget
