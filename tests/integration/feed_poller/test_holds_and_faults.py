"""Holds decided by an operator, the snapshot rules that protect stored assets, and a broker that
stops confirming or goes away mid-run: through the running poller, real Postgres and RabbitMQ."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from rwasync.feed_poller import pipeline
from rwasync.feed_poller.messages import upsert_event
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.asset import canonical_json, normalized_document, parse_asset
from rwasync.schema.events import AssetDeleted, AssetUpserted
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store import feeds
from tests.integration.feed_poller.harness import (
    FeedServer,
    Published,
    add_feed,
    asset,
    body,
    feed_body,
    poller_settings,
    running_poller,
    store_asset,
    trigger,
    wait_for_run,
)
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


async def test_held_runs_are_applied_on_approval_and_dropped_on_rejection(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    long_ago = snapshot - timedelta(days=30)
    for n in range(10):
        await store_asset(db, provider_id, f"s{n}", updated_at=long_ago)
    kept = [asset(f"s{n}") for n in range(2)]
    truncated = feed_body(kept, timestamp=snapshot, total=10)
    shrunk = feed_body(kept, timestamp=snapshot + timedelta(seconds=1))
    url = feed_server.serve("/feed.json", body(truncated), body(shrunk))
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        assert (first["status"], first["reason_code"]) == ("held", "truncated")
        second = await wait_for_run(db, await trigger(db, feed_id))
        assert (second["status"], second["reason_code"]) == ("held", "deletion_threshold")
        assert second["counts"]["held_deletions"] == 8 and "8 of 10" in second["reason"]
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
        async with db.connection() as conn:
            # Only the latest held run can be decided.
            with pytest.raises(feeds.RunNotDecidable):
                await feeds.decide_run(conn, first["run_id"], "approve", provider_id=provider_id)
            await feeds.decide_run(conn, second["run_id"], "approve", provider_id=provider_id)
        approved = await wait_for_run(db, second["run_id"])
        published = await Published(vhost_amqp_url).messages(expect_events=8)
        third = await wait_for_run(db, await trigger(db, feed_id))  # the same shrunk body again
    assert approved["status"] == "ok" and approved["counts"]["deleted"] == 8
    events = [e for m in published for e in m.events]
    assert sorted(e.asset_id for e in events if isinstance(e, AssetDeleted)) == [
        f"s{n}" for n in range(2, 10)
    ]
    assert third["status"] == "not_modified"

    # Rejection: nothing of the held snapshot is applied, and it is dropped.
    url2 = feed_server.serve("/empty.json", body(feed_body([], timestamp=snapshot)))
    feed2 = await add_feed(db, provider_id, url2)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        held = await wait_for_run(db, await trigger(db, feed2))
        assert held["reason_code"] == "empty_feed"
        async with db.connection() as conn:
            await feeds.decide_run(
                conn, held["run_id"], "reject", feed_id=feed2, provider_id=provider_id
            )
            rejected = await feeds.get_run(conn, held["run_id"])
        await asyncio.sleep(1)
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
    assert rejected is not None and rejected["status"] == "rejected"
    assert rejected["reason_code"] == "rejected_by_operator"
    assert (
        await db.fetchval("SELECT count(*) FROM feed_run_items WHERE run_id = $1", held["run_id"])
        == 0
    )


async def test_an_approval_a_later_snapshot_overtook_is_not_applied(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Approved while a later run was under way, which then read a newer snapshot (as another
    replica may, before this one claims the approval): applying the older snapshot would delete
    what the newer lists."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    for n in range(10):
        await store_asset(db, provider_id, f"s{n}", updated_at=snapshot - timedelta(days=30))
    shrunk = feed_body([asset("s0")], timestamp=snapshot)
    feed_id = await add_feed(db, provider_id, feed_server.serve("/feed.json", body(shrunk)))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        held = await wait_for_run(db, await trigger(db, feed_id))
    assert (held["status"], held["reason_code"]) == ("held", "deletion_threshold")
    async with db.connection() as conn:
        later = await feeds.request_run(conn, feed_id, provider_id=provider_id)
        await feeds.decide_run(conn, held["run_id"], "approve", provider_id=provider_id)
    # the later run ends ok first (another replica ran it), before this approval is claimed
    await db.execute(
        "UPDATE feed_runs SET status = 'ok', compared_at = now(), finished_at = now() "
        "WHERE run_id = $1",
        later,
    )
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        approved = await wait_for_run(db, held["run_id"])
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
    assert (approved["status"], approved["reason_code"]) == ("failed", "superseded")
    assert approved["counts"]["held_deletions"] == 9
    assert (
        await db.fetchval(
            "SELECT count(*) FROM assets WHERE provider_id = $1 AND NOT deleted", provider_id
        )
        == 10
    )


async def test_an_item_whose_id_is_not_unicode_is_reported_and_the_run_ends(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """An id read from invalid UTF-8, or spelling a lone surrogate, cannot go into the run's
    errors as it is (no JSON holds a surrogate): recording the run's end failed, and the run
    was claimed and run again each time its lease ran out."""
    good = orjson.dumps(asset("fine"))
    lines = [
        good,
        b'{"id":"ab\xff","updated_at":"2025-05-01T00:00:00Z","status":"active","name":"n"}',
        b'{"id":"cd\\ud800","updated_at":"2025-05-01T00:00:00Z","status":"active","name":"n"}',
    ]
    url = feed_server.serve("/feed.jsonl", body(b"\n".join(lines) + b"\n"))
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["created"] == 1 and run["counts"]["invalid"] == 2
    assert [(e["index"], e["id"]) for e in run["errors"]] == [(1, "ab\ufffd"), (2, "cd\ufffd")]


async def test_an_invalid_items_id_is_reported_cut_and_escaped(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """An id the id rule refuses is the feed's own text, as long as its item: a hostile trial
    stored 20,000 characters of it, terminal escapes as sent, in the run's errors."""
    rest = b'","updated_at":"2025-05-01T00:00:00Z","status":"active","name":"n"}'
    lines = [
        orjson.dumps(asset("fine")),
        b'{"id":"\\u001b[2J' + b"z" * 20000 + rest,
        b'{"id":"a\\u0000b\\u202ec' + rest,
    ]
    url = feed_server.serve("/ids.jsonl", body(b"\n".join(lines) + b"\n"))
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert run["status"] == "ok", run["reason"]
    assert run["counts"]["created"] == 1 and run["counts"]["invalid"] == 2
    ids = [e["id"] for e in run["errors"]]
    assert ids == ["\\x1b[2J" + "z" * 192 + "…", "a\\x00b\\u202ec"], ids


async def test_invalid_and_duplicate_items_protect_and_report(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    long_ago = snapshot - timedelta(days=30)
    await store_asset(db, provider_id, "broken-now", updated_at=long_ago)
    await store_asset(db, provider_id, "gone", updated_at=long_ago)
    items = [
        asset("dup", "2025-05-02T00:00:00Z", name="newest"),
        asset("broken-now", status="not-a-status"),
        asset("dup", "2025-05-01T00:00:00Z", name="older"),
        asset("dup", "2025-05-02T00:00:00Z", name="newest, later in file"),
        asset("other"),
        # The newest copy of an id is invalid: the older valid one must not be published.
        asset("stale-wins", "2025-05-01T00:00:00Z", name="older valid copy"),
        asset("stale-wins", "2025-05-03T00:00:00Z", name=""),
    ]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, await add_feed(db, provider_id, url)))
        published = await Published(vhost_amqp_url).messages(expect_events=3)
    assert run["status"] == "ok"
    assert run["counts"] == {
        "seen": 7,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "deleted": 1,
        "invalid": 2,
        "held_deletions": 0,
    }
    assert [(e["index"], e["id"], e["errors"][0]["pointer"]) for e in run["errors"]] == [
        (0, "dup", "/id"),
        (1, "broken-now", "/status"),
        (2, "dup", "/id"),
        (5, "stale-wins", "/id"),
        (6, "stale-wins", "/name"),
    ]
    assert "superseded by index 6" in run["errors"][3]["errors"][0]["message"]
    assert "superseded by index 3" in run["errors"][0]["errors"][0]["message"]
    events = {e.asset_id: e for m in published for e in m.events}
    assert isinstance(events["gone"], AssetDeleted) and "broken-now" not in events
    assert "stale-wins" not in events
    dup = events["dup"]
    assert (
        isinstance(dup, AssetUpserted) and dup.payload.document["name"] == "newest, later in file"
    )


async def test_a_feed_never_deletes_what_another_enabled_feed_of_the_provider_lists(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A provider with one feed per region: each run deletes only what no other enabled feed of
    the provider lists in its latest snapshot, so the second feed does not wipe the first's
    assets. A disabled feed stands for nothing: the remaining feed then deletes what only the
    disabled one listed."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=10)
    long_ago = snapshot - timedelta(days=30)
    for asset_id in ("a1", "a2", "a3", "b1", "b2"):
        await store_asset(db, provider_id, asset_id, updated_at=long_ago)
    region_a = [asset("a1"), asset("a2"), asset("a3")]
    url_a = feed_server.serve(
        "/a.json",
        body(feed_body(region_a, timestamp=snapshot)),
        body(feed_body(region_a, timestamp=snapshot + timedelta(minutes=1))),
        body(feed_body(region_a, timestamp=snapshot + timedelta(minutes=2))),
    )
    region_b = [asset("b1"), asset("b2")]
    url_b = feed_server.serve("/b.json", body(feed_body(region_b, timestamp=snapshot)))
    feed_a = await add_feed(db, provider_id, url_a)
    feed_b = await add_feed(db, provider_id, url_b)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first_a = await wait_for_run(db, await trigger(db, feed_a))
        first_b = await wait_for_run(db, await trigger(db, feed_b))
        again_a = await wait_for_run(db, await trigger(db, feed_a))
        await db.execute("UPDATE feed_sources SET enabled = false WHERE feed_id = $1", feed_b)
        alone_a = await wait_for_run(db, await trigger(db, feed_a))
        published = await Published(vhost_amqp_url).messages(expect_events=4)
    # (No reconciler here: the stored assets stay as stored, and the items, older, are unchanged.)
    # The first run of region A, alone, deletes b1 and b2; with B's snapshot there, nothing.
    assert (first_a["status"], first_a["counts"]["deleted"]) == ("ok", 2)
    assert (first_b["status"], first_b["counts"]["deleted"]) == ("ok", 0)
    assert (again_a["status"], again_a["counts"]["deleted"]) == ("ok", 0)
    assert (alone_a["status"], alone_a["counts"]["deleted"]) == ("ok", 2)
    deleted = [e.asset_id for m in published for e in m.events if isinstance(e, AssetDeleted)]
    assert sorted(deleted) == ["b1", "b1", "b2", "b2"]


async def test_a_snapshot_older_than_the_last_applied_one_is_held_until_approved(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A stale copy of the feed (timestamp older than the last applied snapshot) is held as
    `stale_snapshot` and publishes nothing. Its items lose to what newer snapshots stored, but
    its deletions, versioned at its snapshot, win over assets not changed since: the reason says
    what an approval would delete (it once said the deletions would be ignored), and an approval
    applies it all the same."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=10)
    items = [asset("a1"), asset("a2")]
    url = feed_server.serve(
        "/feed.json",
        body(feed_body(items, timestamp=snapshot)),
        body(feed_body(items[:1], timestamp=snapshot - timedelta(days=400))),
    )
    feed_id = await add_feed(db, provider_id, url)
    for asset_id in ("a1", "a2"):  # as the reconciler stores them (it does not run here)
        await store_asset(db, provider_id, asset_id, updated_at=datetime(2025, 5, 1, tzinfo=UTC))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        await Published(vhost_amqp_url).messages(expect_events=2)
        stale = await wait_for_run(db, await trigger(db, feed_id))
        assert (stale["status"], stale["reason_code"]) == ("held", "stale_snapshot")
        assert "it would delete 1 of 2 live assets" in stale["reason"], stale["reason"]
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
        async with db.connection() as conn:
            await feeds.decide_run(conn, stale["run_id"], "approve", provider_id=provider_id)
        approved = await wait_for_run(db, stale["run_id"])
    assert first["status"] == "ok"
    assert (approved["status"], approved["counts"]["deleted"]) == ("ok", 1), approved["reason"]


async def test_an_invalid_item_without_a_readable_id_holds_a_run_that_would_delete(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A line garbled from its start protects nothing by its id, yet may be any stored asset:
    the run that would delete is held (`unidentified_items`) until someone decides; without
    deletions it ends `ok`. Before, it deleted a2 here."""
    stored_at = utc_now().replace(microsecond=0) - timedelta(days=1)
    for asset_id in ("a1", "a2", "a3"):
        await store_asset(db, provider_id, asset_id, updated_at=stored_at)
    lines = [orjson.dumps(asset(a)) for a in ("a1", "a3")] + [b'garbled {"id": "a2"']
    everything = [orjson.dumps(asset(a)) for a in ("a1", "a2", "a3")] + [b"not json"]
    url = feed_server.serve(
        "/feed.jsonl", body(b"\n".join(lines) + b"\n"), body(b"\n".join(everything) + b"\n")
    )
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        held = await wait_for_run(db, await trigger(db, feed_id))
        assert (held["status"], held["reason_code"]) == ("held", "unidentified_items"), held
        assert "1 invalid item(s) carry no id" in held["reason"], held["reason"]
        assert held["counts"]["held_deletions"] == 1
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
        undeleting = await wait_for_run(db, await trigger(db, feed_id))
        assert undeleting["status"] == "ok", undeleting["reason"]
        assert undeleting["counts"]["deleted"] == 0 and undeleting["counts"]["invalid"] == 1
        # The later run read a snapshot: the held one stays held; a fresh hold is approved.
        url_again = feed_server.serve("/again.jsonl", body(b"\n".join(lines) + b"\n"))
        again = await add_feed(db, provider_id, url_again, fmt="jsonl")
        await db.execute("UPDATE feed_sources SET enabled = false WHERE feed_id = $1", feed_id)
        second_hold = await wait_for_run(db, await trigger(db, again))
        assert second_hold["reason_code"] == "unidentified_items", second_hold
        async with db.connection() as conn:
            await feeds.decide_run(conn, second_hold["run_id"], "approve", provider_id=provider_id)
        approved = await wait_for_run(db, second_hold["run_id"])
        published = await Published(vhost_amqp_url).messages(expect_events=1)
    assert approved["status"] == "ok", approved["reason"]
    assert [(type(e), e.asset_id) for m in published for e in m.events] == [(AssetDeleted, "a2")]


async def test_an_item_whose_id_breaks_the_id_rule_protects_nothing_and_holds(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A spreadsheet left a blank after a2's id: the item is invalid, and its id ("a2 ") can be
    no stored asset. It kept "a2 " from deletion, which does not exist, and the run deleted a2,
    ending `ok` (a trial). Now it counts as unidentified and the run holds."""
    stored_at = utc_now().replace(microsecond=0) - timedelta(days=1)
    for asset_id in ("a1", "a2"):
        await store_asset(db, provider_id, asset_id, updated_at=stored_at)
    lines = [orjson.dumps(asset("a1")), orjson.dumps(asset("a2 "))]
    url = feed_server.serve("/feed.jsonl", body(b"\n".join(lines) + b"\n"))
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        held = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=0, timeout=1)
    assert (held["status"], held["reason_code"]) == ("held", "unidentified_items"), held
    assert (held["counts"]["invalid"], held["counts"]["held_deletions"]) == (1, 1)
    assert published == []
    assert not await db.fetchval(
        "SELECT deleted FROM assets WHERE provider_id = $1 AND asset_id = 'a2'", provider_id
    )


async def test_an_item_older_than_the_stored_asset_sends_no_price(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A stale copy (older than the stored asset, or than its deletion) is `unchanged` and sends
    nothing: its price, without an `as_of` of its own, would pass for the newest."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    newer = snapshot - timedelta(days=1)
    await store_asset(db, provider_id, "stored-newer", updated_at=newer)
    await store_asset(db, provider_id, "deleted-newer", updated_at=newer, deleted=True)
    price = {"amount": "99", "currency": "USD"}
    items = [
        asset("stored-newer", "2025-05-01T00:00:00Z", price=price),
        asset("deleted-newer", "2025-05-01T00:00:00Z", price=price),
        asset("fresh", price=price),
    ]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=newer)))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, await add_feed(db, provider_id, url)))
        published = await Published(vhost_amqp_url).messages(expect_events=1)
        prices = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(expect_events=1)
    assert run["status"] == "ok", run["reason"]
    assert (run["counts"]["created"], run["counts"]["unchanged"]) == (1, 2)
    # Both unchanged ones are stale: the count says so (a run's dropped changes showed only as
    # unchanged, a trial found).
    assert run["counts"]["stale"] == 2
    assert [e.asset_id for m in published for e in m.events] == ["fresh"]
    assert [e.asset_id for m in prices for e in m.events] == ["fresh"]


async def test_an_item_sends_its_price_only_when_new_or_the_price_changed(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A price is sent when its item is new or its price changed since the feed's last copy.
    The same content in other text (indented, another format) was validated afresh and sent its
    price again, as of the new snapshot: a history point and a stream event with nothing new, and
    over a fresher push. So did an item whose other fields changed (a trial: a description
    edited, and the feed's old price, as of the new snapshot, replaced a pushed one)."""
    item = asset("p1", price={"amount": "51.62", "currency": "USD"})
    document = normalized_document(parse_asset(item))
    await db.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at)
           VALUES ($1, 'p1', $2, false, $2, gen_random_uuid(), 'push', $3, $4, 'active', now())""",
        provider_id,
        parse_asset(item).updated_at,
        document,
        hashlib.sha256(canonical_json(document)).digest(),
    )
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=2)
    repriced = {**item, "price": {"amount": "52", "currency": "USD"}}
    described = {**repriced, "updated_at": "2025-06-01T00:00:00Z", "description": "New roof."}
    indented = orjson.OPT_INDENT_2  # the same content, other text
    url = feed_server.serve(
        "/feed.json",
        body(feed_body([item], timestamp=snapshot)),
        body(orjson.dumps(orjson.loads(feed_body([item], timestamp=snapshot)), option=indented)),
        body(feed_body([repriced], timestamp=snapshot + timedelta(minutes=1))),
        body(feed_body([described], timestamp=snapshot + timedelta(minutes=2))),
    )
    feed_id = await add_feed(db, provider_id, url)
    sent = []
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        for expected in (1, 0, 1, 0):
            run = await wait_for_run(db, await trigger(db, feed_id))
            assert run["status"] == "ok", run["reason"]
            prices = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(
                expect_events=expected, timeout=10 if expected else 1
            )
            sent.append([str(e.payload.amount) for m in prices for e in m.events])  # type: ignore[union-attr]
    # The first listing sends the stored document's price (a pushed document's is catalogue data
    # only); the same copy indented, nothing; the new price, itself; the edit keeping it, nothing.
    assert sent == [["51.62"], [], ["52"], []], sent


async def test_a_push_after_the_snapshot_survives_and_a_later_feed_recreates_a_deletion(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    feed_id = None
    items = [asset("listed"), asset("was-deleted", "2025-01-01T00:00:00Z")]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    # Pushed while the feed's first run could already have started: protected.
    await store_asset(
        db,
        provider_id,
        "pushed",
        updated_at=snapshot - timedelta(days=9),
        accepted_at=utc_now(),
        source="push",
    )
    # Deleted before the snapshot, with a deletion newer than the item's own updated_at.
    await store_asset(
        db, provider_id, "was-deleted", updated_at=snapshot - timedelta(hours=1), deleted=True
    )
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=2)
    assert run["status"] == "ok" and run["counts"]["deleted"] == 0
    events = {e.asset_id: e for m in published for e in m.events}
    assert set(events) == {"listed", "was-deleted"}
    recreated = events["was-deleted"]
    assert isinstance(recreated, AssetUpserted)
    # Versioned at the snapshot; the document keeps its own updated_at.
    assert recreated.updated_at == snapshot
    assert recreated.payload.document["updated_at"] == timestamp_text(
        snapshot.replace(2025, 1, 1, 0, 0, 0)
    )


async def _queued(amqp_url: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.RECONCILER_QUEUE, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def _wait_queued(amqp_url: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while await _queued(amqp_url) < at_least:
        assert time.monotonic() < deadline, "the run published too little"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["stall", "cut"])
async def test_a_broker_that_stops_confirming_fails_the_run_with_what_was_published(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
    fault: str,
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    items = [asset(f"a{n:04d}") for n in range(3000)]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    settings = poller_settings(
        database_url,
        proxy.through(vhost_amqp_url),
        events_per_message=1,
        publish_window=4,
        confirm_stall_seconds=2,
    )
    try:
        async with running_poller(settings):
            run_id = await trigger(db, feed_id)
            await _wait_queued(vhost_amqp_url, 50)
            if fault == "stall":
                proxy.pause()
            else:
                await proxy.cut()
            run = await wait_for_run(db, run_id, timeout=60)
            proxy.resume()
    finally:
        proxy.resume()
        await proxy.cut()
    assert (run["status"], run["reason_code"]) == ("failed", "broker_unavailable")
    if fault == "stall":
        assert "no publisher confirm for 2 s" in run["reason"]
    created = run["counts"]["created"]
    queued = await _queued(vhost_amqp_url)
    # Counts say what the broker confirmed: every one of them is queued (a few unconfirmed may be).
    assert 50 <= created <= queued <= created + 4 < 3000


async def test_a_run_whose_every_message_waits_on_a_broker_given_up_fails(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
) -> None:
    """A broker stalled (half-open: no bytes, no reset) before the run: its one message is sent
    and waits for a confirm until the heartbeat gives the connection up, well before the stall
    check's time; aiormq then cancels the confirms it awaited, and the run ended `ok` with
    nothing published, the next one `not_modified` (fault trial, with the defaults: a 10 s
    heartbeat against the 60 s stall check)."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    items = [asset(f"a{n:04d}") for n in range(30)]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    proxy = await TcpProxy.in_front_of(vhost_amqp_url)
    settings = poller_settings(
        database_url, proxy.through(vhost_amqp_url) + "?heartbeat=1", confirm_stall_seconds=60
    )
    try:
        async with running_poller(settings):
            await asyncio.sleep(0.5)  # connected and declared
            proxy.pause()
            run = await wait_for_run(db, await trigger(db, feed_id), timeout=60)
    finally:
        proxy.resume()
        await proxy.cut()
    assert (run["status"], run["reason_code"]) == ("failed", "broker_unavailable"), run
    assert run["counts"]["created"] == 0
    assert await _queued(vhost_amqp_url) == 0


async def test_a_run_that_fails_mid_publish_for_another_reason_says_what_it_published(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only a broker fault: whatever stops the publish pass, the run's counts say what the
    broker confirmed, which the next run's shortcuts rely on to compare a partly applied
    snapshot again."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    items = [asset(f"a{n:04d}") for n in range(1200)]
    url = feed_server.serve("/feed.json", body(feed_body(items, timestamp=snapshot)))
    feed_id = await add_feed(db, provider_id, url)
    made = []

    def failing_upsert(decision: object, run: object) -> tuple[object, int]:
        made.append(True)
        if len(made) == 1001:
            raise RuntimeError("an event that cannot be built")
        return upsert_event(decision, run)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "upsert_event", failing_upsert)
    async with running_poller(
        poller_settings(database_url, vhost_amqp_url, events_per_message=100)
    ):
        run = await wait_for_run(db, await trigger(db, feed_id), timeout=60)
    assert (run["status"], run["reason_code"]) == ("failed", "internal_error")
    assert "an event that cannot be built" in run["reason"]
    assert 900 <= run["counts"]["created"] <= 1000  # the confirmed messages before it


async def test_a_run_the_database_interrupts_before_publishing_is_queued_again(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """The database refusing connections ('too many clients') while a run staged ended the run
    `failed` for good, its reason quoting the exception (a trial); the feed then waited a whole
    interval. The run goes back to the queue and completes once the database answers."""
    url = feed_server.serve(
        "/feed.json", body(feed_body([asset("a1")], timestamp=utc_now() - timedelta(minutes=1)))
    )
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)) as (poller, _):
        execute = poller._pipeline.execute
        attempts = 0

        async def interrupted_once(claim: Any) -> Any:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")
            return await execute(claim)

        poller._pipeline.execute = interrupted_once  # type: ignore[method-assign]
        run = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=1)
    assert attempts == 2
    assert (run["status"], run["counts"]["created"]) == ("ok", 1), run["reason"]
    assert [e.asset_id for m in published for e in m.events] == ["a1"]
