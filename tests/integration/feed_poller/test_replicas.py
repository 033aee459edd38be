"""Several poller replicas on one database: every run is executed exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from rwasync.feed_poller.claims import RunClaims
from rwasync.platform.db import Database
from rwasync.schema.timestamps import utc_now
from tests.integration.feed_poller.harness import (
    FeedServer,
    add_feed,
    asset,
    body,
    feed_body,
    poller_settings,
    running_poller,
    trigger,
    wait_for_run,
)

pytestmark = pytest.mark.integration


async def test_two_replicas_never_run_one_run_twice(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now() - timedelta(minutes=1)
    feed_ids = []
    for n in range(12):
        content = feed_body([asset(f"f{n}-a"), asset(f"f{n}-b")], timestamp=snapshot)
        # Each fetch takes a while, so one replica at its concurrency limit cannot take every run.
        served = feed_server.serve(f"/f{n}", body(content, delay=0.3))
        feed_ids.append(await add_feed(db, provider_id, served))
    # One provider's runs: its limit of runs in progress must exceed what one replica runs at
    # once, or the replica that frees a slot first would take most of them.
    settings = poller_settings(
        database_url, vhost_amqp_url, max_concurrent_runs=3, max_runs_per_provider=6
    )
    async with running_poller(settings) as (first, _), running_poller(settings) as (second, _):
        # Two runs of every feed, requested at once: both replicas race for all of them.
        run_ids = await asyncio.gather(*(trigger(db, f) for f in feed_ids + feed_ids))
        runs = [await wait_for_run(db, run_id, timeout=40) for run_id in run_ids]
    assert sorted({r["status"] for r in runs}) == ["not_modified", "ok"]
    # One fetch per run: no run was executed twice.
    assert sum(feed_server.hits.values()) == len(run_ids)
    assert all(feed_server.hits[f"/f{n}"] == 2 for n in range(12))
    # Both replicas did part of the work, and nobody else did any.
    assert {r["claimed_by"] for r in runs} == {first.replica_id, second.replica_id}
    # Runs of one feed never overlapped: the second started after the first finished.
    by_feed: dict[str, list[Any]] = {}
    for run in sorted(runs, key=lambda r: r["started_at"]):
        by_feed.setdefault(run["feed_id"], []).append(run)
    for earlier, later in by_feed.values():
        assert later["started_at"] >= earlier["finished_at"]


async def test_replicas_claiming_side_by_side_keep_to_the_limit_per_provider(
    database_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Claims race from eight replicas at once, for one provider's runs of eight feeds: exactly
    its limit of them are claimed, every round."""
    url = feed_server.serve("/feed.json", body(b"{}"))
    for _ in range(8):
        await trigger(db, await add_feed(db, provider_id, url))
    racers = Database(database_url, min_size=8, max_size=8)
    racers.start()
    try:
        await racers.wait_connected(timeout=30)
        replicas = [RunClaims(racers, f"replica-{n}", 60, runs_per_provider=2) for n in range(8)]
        for _ in range(10):
            claims = await asyncio.gather(*(r.claim() for r in replicas))
            assert sum(c is not None for c in claims) == 2
            await db.execute(
                "UPDATE feed_runs SET status = 'queued', started_at = NULL, claimed_by = NULL, "
                "claimed_until = NULL"
            )
    finally:
        await racers.close()
