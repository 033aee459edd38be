"""Feed runs end to end inside one process: real Postgres, real RabbitMQ, a feed on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from rwasync.feed_poller import queries
from rwasync.feed_poller.claims import RunClaims
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.asset import content_hash_hex, normalized_document, parse_asset
from rwasync.schema.events import AssetDeleted, AssetUpserted, EventSource
from rwasync.schema.timestamps import utc_now
from rwasync.store import feeds, receipts
from tests.integration.feed_poller.harness import (
    FeedServer,
    Published,
    add_feed,
    asset,
    body,
    feed_body,
    poller_settings,
    run_row,
    running_poller,
    store_asset,
    trigger,
    wait_for_run,
)
from tests.support.tcpproxy import proxied
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_a_triggered_run_starts_at_once_and_publishes_the_feed(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    items = [
        asset("a1"),
        asset("a2", "2025-05-02T00:00:00Z"),
        asset("a3"),
        asset("bad", status="x"),
    ]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    settings = poller_settings(database_url, vhost_amqp_url, events_per_message=2)
    async with running_poller(settings) as (_, base_url):
        run_id = await trigger(db, feed_id)
        run = await wait_for_run(db, run_id)
        published = await Published(vhost_amqp_url).messages(expect_events=3)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base_url}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base_url}/readyz") as response:
                assert response.status == 200
                assert (await response.json())["checks"] == {
                    "database": True,
                    "broker": True,
                    "poller": True,
                }
            async with http.get(f"{base_url}/metrics") as response:
                metrics = await response.text()
    assert run["started_at"] - run["requested_at"] < timedelta(seconds=5)
    assert run["status"] == "ok", run["reason"]
    assert run["counts"] == {
        "seen": 4,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "deleted": 0,
        "invalid": 1,
        "held_deletions": 0,
    }
    assert run["errors"] == [{"index": 3, "id": "bad", "errors": [run["errors"][0]["errors"][0]]}]
    assert run["errors"][0]["errors"][0]["pointer"] == "/status"
    assert run["snapshot_time"] == snapshot
    assert run["finished_at"] is not None and run["compared_at"] is not None
    assert run["bytes"] == len(feed_body(items, timestamp=snapshot))
    assert run["claimed_until"] is None
    # Three upserts in messages of at most two events.
    assert sorted(len(m.events) for m in published) == [1, 2]
    events = {e.asset_id: e for m in published for e in m.events}
    assert set(events) == {"a1", "a2", "a3"}
    a2 = events["a2"]
    assert isinstance(a2, AssetUpserted)
    expected = normalized_document(parse_asset(items[1]))
    assert a2.payload.document == expected
    assert a2.payload.content_hash == content_hash_hex(expected)
    assert a2.source == EventSource.FEED and a2.provider_id == provider_id
    assert a2.updated_at == parse_asset(items[1]).updated_at
    assert a2.accepted_at == snapshot
    assert run["started_at"] - timedelta(seconds=1) <= a2.received_at <= run["finished_at"]
    assert 'rwasync_feed_runs_total{outcome="ok",reason_code=""}' in metrics
    assert 'rwasync_feed_events_published_total{type="asset.upserted"}' in metrics


async def test_missing_assets_are_deleted_unless_a_push_protects_them(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("kept")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    long_ago = snapshot - timedelta(days=30)
    await store_asset(db, provider_id, "gone", updated_at=long_ago)
    await store_asset(db, provider_id, "old-push", updated_at=long_ago, source="push")
    # Pushed after the feed was added (this is its first run): the snapshot may predate it.
    await store_asset(
        db, provider_id, "new-push", updated_at=long_ago, accepted_at=utc_now(), source="push"
    )
    await store_asset(db, provider_id, "changed-later", updated_at=snapshot + timedelta(seconds=30))
    await store_asset(db, provider_id, "tombstone", updated_at=long_ago, deleted=True)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=3)
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["deleted"] == 2 and run["counts"]["created"] == 1
    deletions = [e for m in published for e in m.events if isinstance(e, AssetDeleted)]
    assert sorted(e.asset_id for e in deletions) == ["gone", "old-push"]
    for deletion in deletions:
        assert deletion.updated_at == snapshot and deletion.accepted_at == snapshot
        assert deletion.payload.reason == f"missing from feed {feed_id} run {run['run_id']}"


async def test_a_push_accepted_but_not_yet_applied_protects_its_asset_too(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A push's 202 comes before the reconciler applies it (its receipt stays `accepted` until
    then): a run comparing meanwhile saw only the older stored row, and deleted the asset at
    the snapshot time, a version the push then lost to."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("kept")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    long_ago = snapshot - timedelta(days=30)
    for asset_id in ("in-flight", "in-flight-before", "decided", "price-only"):
        await store_asset(db, provider_id, asset_id, updated_at=long_ago)

    def receipt(asset_id: str, kind: str, accepted_at: datetime) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4(),
            "provider_id": provider_id,
            "asset_id": asset_id,
            "type": kind,
            "accepted_at": accepted_at,
            "trace_id": None,
        }

    now = utc_now()
    await receipts.record_accepted_wire(
        db.pool,
        [
            receipt("in-flight", "asset.upserted", now),  # after the feed was added: protects
            receipt("in-flight-before", "asset.upserted", long_ago),  # before: does not
            receipt("decided", "asset.upserted", now),
            receipt("price-only", "price.updated", now),  # a price changes no asset
        ],
    )
    await db.execute(
        "UPDATE event_receipts SET status = 'applied', decided_at = now() WHERE asset_id = $1",
        "decided",
    )
    # Never applied here: the run waits for them only briefly, then compares anyway.
    settings = poller_settings(database_url, vhost_amqp_url, push_settle_timeout=0.5)
    async with running_poller(settings):
        run = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=4)
    assert run["status"] == "ok", run["reason"]
    deletions = [e for m in published for e in m.events if isinstance(e, AssetDeleted)]
    assert sorted(e.asset_id for e in deletions) == ["decided", "in-flight-before", "price-only"]


async def test_a_run_compares_once_the_pushes_accepted_before_it_are_applied(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A push deletion accepted before the run but applied after its comparison left the listed
    asset "unchanged" (nothing published), then deleted for good, though the snapshot is later
    than the deletion (which re-creates it when the deletion is applied first)."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(seconds=5)
    listed = asset("relisted")
    url = feed_server.serve("/feed.json", body(feed_body([listed], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    await store_asset(db, provider_id, "relisted", updated_at=snapshot - timedelta(days=30))
    deleted_at = snapshot - timedelta(seconds=10)
    deletion = {
        "event_id": uuid.uuid4(),
        "provider_id": provider_id,
        "asset_id": "relisted",
        "type": "asset.deleted",
        "accepted_at": utc_now(),
        "trace_id": None,
    }
    await receipts.record_accepted_wire(db.pool, [deletion])

    async def reconciler_applies_the_deletion(run_id: str) -> None:
        # Only once the run is under way and has had time to compare: it must be waiting.
        await eventually(
            lambda: db.fetchval("SELECT status FROM feed_runs WHERE run_id = $1", run_id),
            lambda status: status == "running",
        )
        await asyncio.sleep(1.0)
        status = await db.fetchval("SELECT status FROM feed_runs WHERE run_id = $1", run_id)
        assert status == "running", "the run compared without waiting for the push"
        async with db.connection() as conn, conn.transaction():
            await conn.execute(
                """UPDATE assets SET deleted = true, updated_at = $3, accepted_at = $4,
                          source = 'push', document = NULL, content_hash = NULL
                   WHERE provider_id = $1 AND asset_id = $2""",
                provider_id,
                "relisted",
                deleted_at,
                deletion["accepted_at"],
            )
            await conn.execute(
                "UPDATE event_receipts SET status = 'applied', decided_at = now() "
                "WHERE event_id = $1",
                deletion["event_id"],
            )

    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run_id = await trigger(db, feed_id)
        applying = asyncio.create_task(reconciler_applies_the_deletion(run_id))
        run = await wait_for_run(db, run_id)
        await applying
        published = await Published(vhost_amqp_url).messages(expect_events=1)
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["created"] == 1
    [event] = [e for m in published for e in m.events]
    # re-created, versioned at the snapshot: later than the deletion whatever the order
    assert isinstance(event, AssetUpserted) and event.updated_at == snapshot


async def test_an_empty_feed_is_held_until_an_operator_approves_it(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    empty = feed_body([], timestamp=snapshot)
    url = feed_server.serve("/feed.json", body(empty))
    feed_id = await add_feed(db, provider_id, url)
    for asset_id in ("x1", "x2"):
        await store_asset(db, provider_id, asset_id, updated_at=snapshot - timedelta(days=1))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run_id = await trigger(db, feed_id)
        held = await wait_for_run(db, run_id)
        assert held["status"] == "held"
        assert held["reason_code"] == "empty_feed" and held["reason"]
        assert held["counts"]["held_deletions"] == 2 and held["counts"]["deleted"] == 0
        assert held["staged_items"] == 0 and held["compared_at"] is not None
        assert held["finished_at"] is not None
        await asyncio.sleep(0.5)
        nothing = await Published(vhost_amqp_url).messages(expect_events=0, timeout=1)
        assert nothing == []

        async with db.connection() as conn:
            await feeds.decide_run(conn, run_id, "approve")
        approved = await wait_for_run(db, run_id)
        published = await Published(vhost_amqp_url).messages(expect_events=2)
    assert approved["status"] == "ok", approved["reason"]
    assert approved["reason"] is None and approved["reason_code"] is None
    assert approved["decision"] is None
    assert approved["counts"]["deleted"] == 2 and approved["counts"]["held_deletions"] == 0
    assert sorted(e.asset_id for m in published for e in m.events) == ["x1", "x2"]


async def test_an_identical_body_is_not_modified(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("a1")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        await Published(vhost_amqp_url).messages(expect_events=1)
        second = await wait_for_run(db, await trigger(db, feed_id))
        again = await Published(vhost_amqp_url).messages(expect_events=0, timeout=1)
    assert first["status"] == "ok"
    assert second["status"] == "not_modified"
    assert second["body_sha256"] == first["body_sha256"] and second["finished_at"] is not None
    assert again == []
    assert feed_server.hits["/feed.json"] == 2


async def test_a_run_ends_ok_though_dropping_older_snapshots_fails(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropping the snapshots no run needs any more shared the run's ending transaction: when that
    delete failed the run stayed `running`, its events already out, and was run again."""
    monkeypatch.setattr(queries, "FORGET_STAGED_ITEMS", "SELECT 1 / ($1::text = '')::int")
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("a1")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id), timeout=10)
        published = await Published(vhost_amqp_url).messages(expect_events=1)
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["created"] == 1
    assert len(published) == 1
    assert feed_server.hits["/feed.json"] == 1


async def test_a_scheduled_feed_runs_by_itself(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("a1")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url, schedule="1h")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        await db.execute("UPDATE feed_sources SET next_run_at = now() WHERE feed_id = $1", feed_id)
        run_id = None
        for _ in range(100):
            run_id = await db.fetchval("SELECT run_id FROM feed_runs WHERE feed_id = $1", feed_id)
            if run_id is not None:
                break
            await asyncio.sleep(0.05)
        assert run_id is not None, "no scheduled run within 5 s"
        run = await wait_for_run(db, run_id)
    assert run["trigger"] == "schedule" and run["status"] == "ok"
    next_run_at = await db.fetchval(
        "SELECT next_run_at FROM feed_sources WHERE feed_id = $1", feed_id
    )
    # One interval later, with up to 10 % jitter.
    ahead = next_run_at - run["requested_at"]
    assert timedelta(seconds=3590) < ahead < timedelta(seconds=3960)
    assert await db.fetchval("SELECT count(*) FROM feed_runs WHERE feed_id = $1", feed_id) == 1


async def test_a_feed_disabled_when_due_never_runs_and_enabled_again_runs_once_soon(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """The operator's `feed disable` / `feed enable` (`set_feed_enabled`): disabled, a feed long
    past due has no next run and the poller queues none; enabled again, the poller runs it once
    within the jitter (up to 6 s of a minute), not at the time its schedule stood at, then one
    interval after that run."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("a1")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url, schedule="60s")
    async with db.connection() as conn:
        off = await feeds.set_feed_enabled(conn, feed_id, False)
    assert off["next_run_at"] is None
    assert (
        await db.fetchval("SELECT next_run_at FROM feed_sources WHERE feed_id = $1", feed_id)
        is None
    )

    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        await asyncio.sleep(1)  # five polls
        assert await db.fetchval("SELECT count(*) FROM feed_runs WHERE feed_id = $1", feed_id) == 0
        before = utc_now()
        async with db.connection() as conn:
            on = await feeds.set_feed_enabled(conn, feed_id, True)
        due = datetime.fromisoformat(on["next_run_at"].replace("Z", "+00:00"))
        assert before <= due <= utc_now() + timedelta(seconds=6), on
        run_id = await eventually(
            lambda: db.fetchval("SELECT run_id FROM feed_runs WHERE feed_id = $1", feed_id),
            lambda found: found is not None,
            timeout=15,
            what="the run of the feed enabled again",
        )
        run = await wait_for_run(db, run_id)
    assert run["trigger"] == "schedule" and run["status"] == "ok"
    next_run_at = await db.fetchval(
        "SELECT next_run_at FROM feed_sources WHERE feed_id = $1", feed_id
    )
    ahead = next_run_at - run["requested_at"]
    assert timedelta(seconds=59) < ahead < timedelta(seconds=67), ahead
    assert await db.fetchval("SELECT count(*) FROM feed_runs WHERE feed_id = $1", feed_id) == 1


async def test_a_run_whose_poller_died_is_run_again(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/feed.json", body(feed_body([asset("a1")], timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    run_id = await trigger(db, feed_id)
    # Claimed by a replica that is gone: its lease ran out.
    await db.execute(
        """UPDATE feed_runs SET status = 'running', started_at = now() - interval '20 minutes',
                  claimed_by = 'dead-replica', claimed_until = now() - interval '1 minute'
           WHERE run_id = $1""",
        run_id,
    )
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running_poller(poller_settings(database_url, vhost_amqp_url)) as (poller, _):
            run = await wait_for_run(db, run_id)
    assert run["status"] == "ok"
    assert run["claimed_by"] == poller.replica_id
    assert feed_server.hits["/feed.json"] == 1
    # The line names the replica that dropped it, and the poller's lines name their own (an
    # operator could tell neither: multi-replica trial).
    (expired,) = [e for e in logs if e["event"] == "feed run lease expired, queued again"]
    assert expired["claimed_by"] == "dead-replica"
    assert expired["replica_id"] == poller.replica_id


async def test_a_stopping_poller_hands_its_runs_back(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(_: web.Request) -> web.StreamResponse:
        started.set()
        await release.wait()
        return web.Response(status=503)

    url = feed_server.serve("/slow.json", slow)
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run_id = await trigger(db, feed_id)
        await asyncio.wait_for(started.wait(), 5)
        assert (await run_row(db, run_id))["status"] == "running"
    release.set()
    row = await run_row(db, run_id)
    assert row["status"] == "queued" and row["claimed_by"] is None and row["started_at"] is None
    # Nothing else would take it: it waits for the next replica.
    assert await db.fetchval(queries.RECOVER_EXPIRED_RUNS) is None


async def test_a_claim_whose_answer_was_on_its_way_when_the_poller_stopped_is_handed_back(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Stopped between the database committing its claim and the answer arriving, the poller
    forgot the claim: the run stayed `running` under a lease nobody renewed, so the feed (and an
    approval of its held run) waited a whole lease, 60 s, with nothing logged. Seen once as a
    fault-suite test whose second poller never claimed an approval."""
    feed_id = await add_feed(
        db, provider_id, feed_server.serve("/feed.json", body(feed_body([], timestamp=utc_now())))
    )
    async with (
        proxied(database_url) as (proxy, proxied_url),
        running_poller(poller_settings(proxied_url, vhost_amqp_url)) as (poller, _),
    ):
        proxy.latency = 0.25  # every answer from Postgres now takes a quarter second
        run_id = await trigger(db, feed_id)
        await eventually(
            lambda: run_row(db, run_id),
            lambda row: row["status"] == "running",
            interval=0.01,
            what="the claim committed",
        )
        assert poller.runs_in_progress == []  # its answer is still on the way: stop now
    row = await run_row(db, run_id)
    assert (row["status"], row["claimed_by"], row["claimed_until"]) == ("queued", None, None)


async def test_a_run_whose_lease_was_lost_stops_here(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A replica whose lease ran out (the database away for a lease, say) while another replica
    recovered and claimed its run went on fetching, comparing and publishing the same run until
    `finish` said it was not its own (review). Its next renewal now finds the run gone and stops
    it; the other replica's claim stands."""
    started, release = asyncio.Event(), asyncio.Event()

    async def hang(_: web.Request) -> web.StreamResponse:
        started.set()
        await release.wait()
        return web.Response(status=503)

    feed_id = await add_feed(db, provider_id, feed_server.serve("/hang.json", hang))
    # Left alone, the fetch would wait 30 s for a byte before failing.
    settings = poller_settings(
        database_url, vhost_amqp_url, run_lease_seconds=10, min_rate_seconds=30, total_timeout=60
    )
    async with running_poller(settings) as (poller, _):
        run_id = await trigger(db, feed_id)
        await asyncio.wait_for(started.wait(), 10)
        assert poller.runs_in_progress == [run_id]
        await db.execute(
            "UPDATE feed_runs SET claimed_by = 'replica-b', claimed_until = now() + interval"
            " '10 minutes' WHERE run_id = $1",
            run_id,
        )

        async def in_progress() -> list[str]:
            return poller.runs_in_progress

        try:
            # Renewals come every third of the lease (~3.3 s).
            await eventually(in_progress, lambda r: r == [], timeout=10, what="the run stopped")
        finally:
            release.set()
        assert poller.is_running()
    row = await run_row(db, run_id)
    assert (row["status"], row["claimed_by"]) == ("running", "replica-b")


def test_leases_must_be_renewed_more_often_than_they_run_out() -> None:
    with pytest.raises(ValueError, match="at most a third of RWASYNC_FEED_POLLER_RUN_LEASE"):
        poller_settings("postgresql://x/y", "amqp://x/", run_lease_seconds=30, poll_interval=11)
    assert poller_settings("postgresql://x/y", "amqp://x/", run_lease_seconds=30, poll_interval=10)


async def test_one_provider_s_hanging_feeds_leave_slots_for_the_others(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A user's trial: four feeds of one provider on a server that hangs filled all four slots,
    and another provider's trigger waited 97 s. Now that provider has at most two runs in
    progress, and the other's run is claimed next, ahead of its older queued runs."""
    release = asyncio.Event()

    async def hang(_: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=503)

    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_other', 'Other')")
    hanging = [
        await add_feed(db, provider_id, feed_server.serve(f"/hang{n}.json", hang)) for n in range(4)
    ]
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    url = feed_server.serve("/other.json", body(feed_body([asset("o1")], timestamp=snapshot)))
    other = await add_feed(db, "prv_other", url)
    # Each hanging try takes 5 s (min_rate_seconds) and a run tries 3 times: the slots they
    # hold stay held well past the 5 s the other provider's run may take.
    settings = poller_settings(database_url, vhost_amqp_url, max_concurrent_runs=4)
    try:
        async with running_poller(settings):
            slow = [await trigger(db, f) for f in hanging]
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM feed_runs WHERE status = 'running'"),
                lambda n: n >= 2,
                timeout=5,
                what="the hanging runs started",
            )
            run = await wait_for_run(db, await trigger(db, other), timeout=5)
            statuses = [(await run_row(db, r))["status"] for r in slow]
    finally:
        release.set()
    assert run["status"] == "ok"
    assert sorted(statuses) == ["queued", "queued", "running", "running"]
    assert sum(feed_server.hits[f"/hang{n}.json"] > 0 for n in range(4)) == 2


async def test_a_claim_takes_the_provider_with_the_fewest_runs_in_progress_first(
    db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Oldest request first only among the providers with the fewest runs in progress: a newer
    run of a provider with none goes before the older runs of one with some."""
    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_other', 'Other')")
    url = feed_server.serve("/feed.json", body(b"{}"))
    mine = [await trigger(db, await add_feed(db, provider_id, url)) for _ in range(3)]
    theirs = await trigger(db, await add_feed(db, "prv_other", url))
    claims = RunClaims(db, "replica-a", lease_seconds=60, runs_per_provider=3)
    order = []
    for _ in range(5):
        claim = await claims.claim()
        order.append(claim.run_id if claim is not None else None)
    # 0 and 0: the oldest; then 1 against 0, and the other provider's run; the rest in turn, and
    # nothing once the provider reached its limit.
    assert order == [mine[0], theirs, mine[1], mine[2], None]
    fourth = await trigger(db, await add_feed(db, provider_id, url))
    assert await claims.claim() is None
    await db.execute("UPDATE feed_runs SET status = 'ok' WHERE run_id = $1", mine[0])
    claim = await claims.claim()
    assert claim is not None and claim.run_id == fourth


async def test_a_renewal_after_a_run_ended_gives_it_no_lease(
    db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A renewal that waited on the row lock of a run's ending (the loop renews every run it
    holds, one of which was just finishing) set a lease on the ended run: a held run, approved
    straight after, could not be claimed by any replica for that lease, 60 s (seen as a
    default-suite run whose `claimed_until` was set after it ended `ok`)."""
    run_id = await trigger(
        db, await add_feed(db, provider_id, feed_server.serve("/f", body(b"{}")))
    )
    claims = RunClaims(db, "replica-a", lease_seconds=60, runs_per_provider=3)
    claim = await claims.claim()
    assert claim is not None and claim.run_id == run_id
    # How FINISH_RUN leaves a held run: its replica recorded, no lease.
    await db.execute(
        "UPDATE feed_runs SET status = 'held', finished_at = now(), claimed_until = NULL"
        " WHERE run_id = $1",
        run_id,
    )
    assert await claims.renew([run_id]) == {run_id}  # not this replica's to run any more
    assert (await run_row(db, run_id))["claimed_until"] is None
    async with db.connection() as conn:
        await feeds.decide_run(conn, run_id, "approve", provider_id=provider_id)
    approval = await RunClaims(db, "replica-b", lease_seconds=60, runs_per_provider=3).claim()
    assert approval is not None and (approval.run_id, approval.is_approval) == (run_id, True)


async def test_a_message_of_large_documents_is_cut_at_the_brokers_size_budget(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Upserts go many to a message (`events_per_message`), but a message is also cut once its
    documents reach `topology.MESSAGE_BYTES_BUDGET`: 500 documents of ~0.4 MB (each within the
    contract) made one 200 MB message, which RabbitMQ 4 (16 MiB `max_message_size` by default)
    refuses, failing the run on every try."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    items = [
        asset(
            f"big-{n:02d}",
            attributes={f"{i:03d}" + "k" * 1996: "v" * 2000 for i in range(100)},
        )
        for n in range(24)
    ]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id), timeout=60)
        published = Published(vhost_amqp_url)
        messages = await published.messages(expect_events=24, timeout=30)
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["created"] == 24
    assert sorted(e.asset_id for m in messages for e in m.events) == [i["id"] for i in items]
    assert len(messages) >= 3, published.sizes
    # The cut comes after the document that reaches the budget: at most one more over it.
    assert max(published.sizes) <= topology.MESSAGE_BYTES_BUDGET + 1024**2, published.sizes
