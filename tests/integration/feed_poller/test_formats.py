"""Every feed format and gzip through the running poller, conditional requests, credentials,
prices, and unchanged items recognised by fingerprint: real Postgres, real RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import codecs
import csv
import gzip
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from rwasync.feeds.auth import FeedSecrets
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.asset import canonical_json, normalized_document, parse_asset
from rwasync.schema.events import AssetUpserted, PriceUpdated
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store import feed_settings, feeds
from tests.integration.feed_poller.harness import (
    NO_SECRETS,
    OPERATOR_POLICY,
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

pytestmark = pytest.mark.integration

PRICED = asset("p1", price={"amount": "52.10", "currency": "USD", "as_of": "2025-05-02T00:00:00Z"})
ITEMS = [asset("a1"), asset("a2", "2025-05-02T00:00:00Z", address={"city": "Detroit"}), PRICED]


def as_csv(items: list[dict[str, Any]]) -> bytes:
    def flat(doc: Any, prefix: str = "") -> dict[str, str]:
        if isinstance(doc, dict):
            return {
                k: v
                for key, value in doc.items()
                for k, v in flat(value, f"{prefix}{key}.").items()
            }
        return {prefix[:-1]: str(doc)}

    rows = [flat(item) for item in items]
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def bodies(snapshot: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    envelope = feed_body(ITEMS, timestamp=snapshot)
    jsonl = b"".join(json.dumps(i).encode() + b"\n" for i in ITEMS)
    return {
        "/envelope.json": ("json", envelope, {}),
        "/array.json": (
            "json",
            json.dumps(ITEMS).encode(),
            {"Last-Modified": "Sun, 01 Jun 2025 10:00:00 GMT"},
        ),
        "/lines.jsonl": ("jsonl", jsonl, {}),
        "/export.csv": ("csv", as_csv(ITEMS), {}),
        "/envelope.json.gz": ("json", gzip.compress(envelope), {}),
        "/encoded.csv": ("csv", gzip.compress(as_csv(ITEMS)), {"Content-Encoding": "gzip"}),
        # Neither `.gz` nor Content-Encoding: gzip by its magic bytes.
        "/static/export-csv": ("csv", gzip.compress(as_csv(ITEMS)), {}),
        # A byte order mark first, as some exporters write: ignored in every format (it made a
        # JSON Lines feed's first item invalid, its id unread, and so its asset a deletion).
        "/bom/envelope.json": ("json", codecs.BOM_UTF8 + envelope, {}),
        "/bom/lines.jsonl": ("jsonl", codecs.BOM_UTF8 + jsonl, {}),
        "/bom/export.csv": ("csv", codecs.BOM_UTF8 + as_csv(ITEMS), {}),
    }


async def test_every_format_and_gzip_publishes_the_same_events(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    cases = bodies(timestamp_text(snapshot))
    expected = {i["id"]: canonical_json(normalized_document(parse_asset(i))) for i in ITEMS}
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        for path, (fmt, content, headers) in cases.items():
            # A provider of its own per format, so each run creates all three assets.
            provider = f"prv_{fmt}_{len(path)}"
            await db.execute("INSERT INTO providers (provider_id, name) VALUES ($1, $1)", provider)
            url = feed_server.serve(path, body(content, headers=headers))
            run = await wait_for_run(
                db, await trigger(db, await add_feed(db, provider, url, fmt=fmt))
            )
            assert run["status"] == "ok", (path, run["reason"])
            assert run["counts"]["created"] == 3 and run["counts"]["invalid"] == 0, path
            published = await Published(vhost_amqp_url).messages(expect_events=3)
            events = [e for m in published for e in m.events]
            assert all(isinstance(e, AssetUpserted) for e in events), path
            documents = {e.asset_id: canonical_json(e.payload.document) for e in events}  # type: ignore[union-attr]
            assert documents == expected, path
            accepted = {e.accepted_at for e in events}
            if path == "/array.json":
                # No timestamp in a bare array: the response's Last-Modified is the snapshot.
                assert accepted == {run["snapshot_time"]} and run["snapshot_time"].hour == 10
            elif fmt in ("jsonl", "csv"):
                # Neither timestamp nor Last-Modified: the fetch start.
                assert run["started_at"] - timedelta(seconds=2) <= run["snapshot_time"]
            else:
                assert accepted == {snapshot}
            prices = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(
                expect_events=1
            )
            [price] = [e for m in prices for e in m.events]
            assert isinstance(price, PriceUpdated) and price.asset_id == "p1"
            assert str(price.payload.amount) == "52.10" and price.payload.as_of.day == 2
            assert price.accepted_at == run["snapshot_time"] and price.source == "feed"
    gz = await db.fetchrow(
        "SELECT bytes, decoded_bytes FROM feed_runs r JOIN feed_sources f USING (feed_id) "
        "WHERE f.url LIKE '%envelope.json.gz'"
    )
    assert gz["bytes"] < gz["decoded_bytes"] == len(cases["/envelope.json"][1])
    sniffed = await db.fetchrow(
        "SELECT bytes, decoded_bytes FROM feed_runs r JOIN feed_sources f USING (feed_id) "
        "WHERE f.url LIKE '%/static/export-csv'"
    )
    assert sniffed["bytes"] < sniffed["decoded_bytes"] == len(cases["/export.csv"][1])


def etag_v1(
    content: bytes, seen: list[web.Request], *, last_modified: str | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A feed server answering `content` with ETag "v1" (and `last_modified`), or a 304 to a
    request that sends that ETag back; every request it gets lands in `seen`."""
    headers = {"ETag": '"v1"'} | ({"Last-Modified": last_modified} if last_modified else {})

    async def conditional(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=content, headers=headers)

    return conditional


async def test_conditional_requests_and_identical_bodies_are_not_modified(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    content = feed_body([asset("a1")], timestamp=snapshot)
    seen: list[web.Request] = []
    conditional = etag_v1(content, seen, last_modified="Sun, 01 Jun 2025 10:00:00 GMT")
    url = feed_server.serve("/feed.json", conditional)
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        await Published(vhost_amqp_url).messages(expect_events=1)
        second = await wait_for_run(db, await trigger(db, feed_id))
        third = await wait_for_run(db, await trigger(db, feed_id))
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []
    assert (first["status"], second["status"], third["status"]) == (
        "ok",
        "not_modified",
        "not_modified",
    )
    assert "If-None-Match" not in seen[0].headers
    assert seen[1].headers["If-None-Match"] == '"v1"'
    assert seen[1].headers["If-Modified-Since"] == "Sun, 01 Jun 2025 10:00:00 GMT"
    assert seen[2].headers["If-None-Match"] == '"v1"'
    assert second["counts"]["seen"] == 0 and second["bytes"] is None


async def test_a_new_url_gets_no_validators_of_the_old_one(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """After the feed moves to another URL, its first request there is unconditional: the old
    server's ETag and Last-Modified mean nothing to the new one (which could answer 304 to an
    old If-Modified-Since, and its snapshot would never be read)."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    old_seen: list[web.Request] = []
    new_seen: list[web.Request] = []
    modified = "Sun, 01 Jun 2025 10:00:00 GMT"
    old_url = feed_server.serve(
        "/old.json",
        etag_v1(feed_body([asset("a1")], timestamp=snapshot), old_seen, last_modified=modified),
    )
    new_url = feed_server.serve(
        "/new.json",
        etag_v1(feed_body([asset("a2")], timestamp=snapshot), new_seen, last_modified=modified),
    )
    feed_id = await add_feed(db, provider_id, old_url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        settings = feed_settings.parse_feed_settings({"url": new_url}, OPERATOR_POLICY)
        async with db.connection() as conn:
            await feeds.put_feed(
                conn, provider_id=provider_id, feed_id=feed_id, settings=settings,
                secrets=NO_SECRETS,
            )  # fmt: skip
        moved = await wait_for_run(db, await trigger(db, feed_id))
    assert (first["status"], moved["status"]) == ("ok", "ok")
    assert "If-None-Match" not in new_seen[0].headers
    assert "If-Modified-Since" not in new_seen[0].headers


async def test_after_a_run_that_failed_part_way_the_same_body_is_compared_again(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A provider reverts its export after a run that failed having published part of another
    snapshot: the revert must be compared, not skipped as `not_modified` by the earlier body's
    validators or digest, or the half-applied snapshot would stay."""
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    content = feed_body([asset("a1")], timestamp=snapshot)
    seen: list[web.Request] = []
    url = feed_server.serve("/feed.json", etag_v1(content, seen))
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        await Published(vhost_amqp_url).messages(expect_events=1)
        # Another snapshot's run published the creation of a2, then failed (the broker went
        # away, say), as the poller records it; the reconciler applied a2.
        await db.execute(
            """INSERT INTO feed_runs (run_id, feed_id, provider_id, status, reason_code, trigger,
                                      started_at, finished_at, counts)
               VALUES ('partial', $1, $2, 'failed', 'broker_unavailable', 'manual', now(), now(),
                       '{"seen": 2, "created": 1, "updated": 0, "unchanged": 1, "deleted": 0,
                         "invalid": 0, "held_deletions": 0}')""",
            feed_id,
            provider_id,
        )
        await store_asset(db, provider_id, "a2", updated_at=snapshot - timedelta(minutes=1))
        reverted = await wait_for_run(db, await trigger(db, feed_id))
        # (a1 again too: no reconciler here applied the first run's creation)
        published = await Published(vhost_amqp_url).messages(expect_events=2)
        # Once a run has compared again, the shortcuts hold as before.
        after = await wait_for_run(db, await trigger(db, feed_id))
    assert (first["status"], reverted["status"], after["status"]) == ("ok", "ok", "not_modified")
    assert "If-None-Match" not in seen[1].headers
    assert reverted["counts"]["deleted"] == 1
    assert ("asset.deleted", "a2") in [(e.type, e.asset_id) for m in published for e in m.events]
    assert seen[2].headers["If-None-Match"] == '"v1"'


async def test_unchanged_items_skip_validation_and_only_changes_are_published(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    items = [asset(f"a{n}", price={"amount": "10", "currency": "USD"}) for n in range(30)]
    changed = [
        *items[:29],
        asset("a29", "2025-05-03T00:00:00Z", price={"amount": "11", "currency": "USD"}),
    ]
    url = feed_server.serve(
        "/feed.jsonl",
        body(b"".join(json.dumps(i).encode() + b"\n" for i in items)),
        body(b"".join(json.dumps(i).encode() + b"\n" for i in changed)),
    )
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url, events_per_message=7)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        published = await Published(vhost_amqp_url).messages(expect_events=30)
        # Apply what the reconciler would: the stored state now equals the feed.
        for event in (e for m in published for e in m.events):
            assert isinstance(event, AssetUpserted)
            await db.execute(
                """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at,
                       event_id, source, document, content_hash, status, applied_at)
                   VALUES ($1, $2, $3, false, $4, $5, 'feed', $6, $7, 'active', now())""",
                provider_id,
                event.asset_id,
                event.updated_at,
                event.accepted_at,
                event.event_id,
                event.payload.document,
                bytes.fromhex(event.payload.content_hash),
            )
        await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(expect_events=30)
        second = await wait_for_run(db, await trigger(db, feed_id))
        update = await Published(vhost_amqp_url).messages(expect_events=1)
        prices = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(expect_events=1)
        staged = await db.fetchrow(
            "SELECT count(*) AS total, count(document) AS documents FROM feed_run_items"
            " WHERE run_id = $1",
            second["run_id"],
        )
    assert first["status"] == second["status"] == "ok"
    assert second["counts"] == {
        "seen": 30,
        "created": 0,
        "updated": 1,
        "unchanged": 29,
        "stale": 0,
        "deleted": 0,
        "invalid": 0,
        "held_deletions": 0,
    }
    assert [e.asset_id for m in update for e in m.events] == ["a29"]
    assert [(e.asset_id, str(e.payload.amount)) for m in prices for e in m.events] == [
        ("a29", "11")
    ]  # type: ignore[union-attr]
    # 29 items matched last run's fingerprints: staged without a document, never validated.
    assert (staged["total"], staged["documents"]) == (30, 1)
    # Only the latest ok run keeps its snapshot.
    assert await db.fetchval("SELECT count(DISTINCT run_id) FROM feed_run_items") == 1


async def test_a_price_a_stale_item_withheld_is_sent_with_the_items_next_version(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """The first run lists a1 older than its stored (pushed) version: stale, its price withheld.
    The next lists a1 newer, with the same price: an update, and the price is news. The run
    compared the price with the last copy's and sent nothing, as if the stale copy had sent it
    (a review)."""
    stale = asset("a1", "2025-05-01T00:00:00Z", price={"amount": "99", "currency": "USD"})
    newer = {**stale, "updated_at": "2025-05-03T00:00:00Z", "name": "renamed"}
    await store_asset(db, provider_id, "a1", updated_at=datetime(2025, 5, 2, tzinfo=UTC),
                      source="push")  # fmt: skip
    url = feed_server.serve(
        "/feed.jsonl", body(json.dumps(stale).encode()), body(json.dumps(newer).encode())
    )
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        withheld = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(expect_events=0)
        second = await wait_for_run(db, await trigger(db, feed_id))
        await Published(vhost_amqp_url).messages(expect_events=1)
        prices = await Published(vhost_amqp_url, topology.PRICING_QUEUE).messages(expect_events=1)
    assert (first["counts"]["stale"], withheld) == (1, [])
    assert second["counts"]["updated"] == 1
    sent = [e for m in prices for e in m.events]
    assert [(e.asset_id, str(e.payload.amount)) for e in sent] == [("a1", "99")]  # type: ignore[union-attr]


async def test_feed_credentials_reach_the_feed_sealed_and_only_its_own_origin(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    key = FeedSecrets.new_key()
    secrets = FeedSecrets(key)
    content = feed_body([asset("a1")], timestamp=utc_now() - timedelta(minutes=1))
    seen: dict[str, list[web.Request]] = {"basic": [], "bearer": [], "header": [], "moved": []}
    auth = {
        "basic": {"type": "basic", "username": "feeds", "password": "pa55-word"},
        "bearer": {"type": "bearer", "token": "tok-123"},
        "header": {"type": "header", "name": "X-Api-Key", "value": "key-456"},
    }
    feed_ids = {}
    for name, document in auth.items():
        url = feed_server.serve(f"/{name}", body(content, seen=seen[name]))
        feed_ids[name] = await add_feed(db, provider_id, url, auth=document, secrets=secrets)
    # A redirect to another origin (localhost vs 127.0.0.1) must not carry the credentials.
    feed_server.serve("/moved-target", body(content, seen=seen["moved"]))
    redirect_url = feed_server.url("/moved-target", host="localhost")

    async def moving(_: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": redirect_url})

    moved_id = await add_feed(
        db, provider_id, feed_server.serve("/moved", moving), auth=auth["bearer"], secrets=secrets
    )
    stored = await db.fetch("SELECT auth, auth_secret FROM feed_sources")
    for row in stored:
        assert all(
            s.encode() not in bytes(row["auth_secret"]) for s in ("pa55-word", "tok-123", "key-456")
        )
    async with db.connection() as conn:
        listed = await feeds.list_feeds(conn, provider_id)
    assert "pa55-word" not in json.dumps(listed) and "tok-123" not in json.dumps(listed)
    assert {f["auth"]["type"] for f in listed["items"]} == {"basic", "bearer", "header"}
    settings = poller_settings(database_url, vhost_amqp_url, RWASYNC_FEED_SECRETS_KEY=key)
    async with running_poller(settings):
        runs = {name: await wait_for_run(db, await trigger(db, f)) for name, f in feed_ids.items()}
        moved = await wait_for_run(db, await trigger(db, moved_id))
    assert all(r["status"] in ("ok", "not_modified") for r in runs.values()), runs
    assert (
        seen["basic"][0].headers["Authorization"]
        == "Basic " + base64.b64encode(b"feeds:pa55-word").decode()
    )
    assert seen["bearer"][0].headers["Authorization"] == "Bearer tok-123"
    assert seen["header"][0].headers["X-Api-Key"] == "key-456"
    assert moved["status"] in ("ok", "not_modified")
    assert "Authorization" not in seen["moved"][0].headers


async def test_credentials_without_the_key_fail_the_run_clearly(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed.json", body(b"[]"))
    feed_id = await add_feed(
        db,
        provider_id,
        url,
        auth={"type": "bearer", "token": "t"},
        secrets=FeedSecrets(FeedSecrets.new_key()),
    )
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert (run["status"], run["reason_code"]) == ("failed", "fetch_error")
    assert "RWASYNC_FEED_SECRETS_KEY" in run["reason"] and feed_server.hits["/feed.json"] == 0


@pytest.mark.parametrize("path", ["/bomb.json.gz", "/static/bomb"])
async def test_a_gzip_bomb_stops_at_the_decoded_cap(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
    path: str,
) -> None:
    """By its `.gz` path or by its magic bytes alone, a bomb is decoded only to the cap."""
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 100_000
    url = feed_server.serve(path, body(bomb))
    settings = poller_settings(database_url, vhost_amqp_url, max_decoded_bytes=1024 * 1024)
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(settings):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert (run["status"], run["reason_code"]) == ("failed", "size_limit")
    assert "decoded" in run["reason"]


async def test_a_trickling_server_fails_the_minimum_rate(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(200):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    url = feed_server.serve("/slow.json", trickle)
    settings = poller_settings(
        database_url, vhost_amqp_url, min_rate_bytes=1024, min_rate_seconds=1, fetch_tries=2
    )
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(settings):
        run = await wait_for_run(db, await trigger(db, feed_id), timeout=30)
    assert (run["status"], run["reason_code"]) == ("failed", "timeout"), run["reason"]
    assert "fewer than 1024 bytes" in run["reason"] and "2 tries" in run["reason"]
    assert feed_server.hits["/slow.json"] == 2


async def apply_published(db: Database, provider_id: str, published: list[Any]) -> None:
    """Store what the reconciler would apply of `published`: the catalogue then equals the feed."""
    for event in (e for m in published for e in m.events):
        assert isinstance(event, AssetUpserted)
        await db.execute(
            """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at,
                   event_id, source, document, content_hash, status, applied_at)
               VALUES ($1, $2, $3, false, $4, $5, 'feed', $6, $7, 'active', now())
               ON CONFLICT (provider_id, asset_id) DO UPDATE SET
                   updated_at = excluded.updated_at, document = excluded.document,
                   content_hash = excluded.content_hash""",
            provider_id,
            event.asset_id,
            event.updated_at,
            event.accepted_at,
            event.event_id,
            event.payload.document,
            bytes.fromhex(event.payload.content_hash),
        )


def too_large(size: int, limit: int) -> dict[str, str]:
    return {
        "pointer": "",
        "message": f"the item is {size} bytes, over the limit of {limit} bytes for one asset "
        "(RWASYNC_INGEST_MAX_BODY_BYTES)",
    }


async def test_an_item_over_the_single_asset_limit_is_invalid_alone_and_stays_reported(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """The poller reads ingest-api's limit on one asset's body (RWASYNC_INGEST_MAX_BODY_BYTES):
    a larger item is invalid for that alone, listed by its id, the others applied. A copy whose
    raw bytes are unchanged since a run that accepted it (under a larger limit) is not vouched
    for by its fingerprint: it is found too large, run after run."""
    big = asset("big", description="d" * 3000)
    items = [asset(f"a{n}") for n in range(5)]
    lines = [json.dumps(i).encode() for i in [*items[:2], big, *items[2:]]]
    size = len(lines[2])
    limit = 2048
    assert size > limit

    def feed(changed: int) -> bytes:
        """The same items, but `a4` at another version each time: the body differs, `big` not."""
        versions = [*lines[:-1], json.dumps(asset("a4", f"2025-05-0{changed}T00:00:00Z")).encode()]
        return b"\n".join(versions) + b"\n"

    url = feed_server.serve("/feed.jsonl", body(feed(1)), body(feed(2)), body(feed(3)))
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    # Within the default limit (1 MiB): all six are taken.
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        first = await wait_for_run(db, await trigger(db, feed_id))
        await apply_published(
            db, provider_id, await Published(vhost_amqp_url).messages(expect_events=6)
        )
    assert first["status"] == "ok" and first["counts"]["created"] == 6
    settings = poller_settings(database_url, vhost_amqp_url, RWASYNC_INGEST_MAX_BODY_BYTES=limit)
    assert settings.max_item_bytes == limit
    async with running_poller(settings):
        for run_number in (2, 3):
            run = await wait_for_run(db, await trigger(db, feed_id))
            assert run["status"] == "ok", run["reason"]
            assert run["counts"]["invalid"] == 1 and run["counts"]["updated"] == 1, run["counts"]
            assert run["errors"] == [{"index": 2, "id": "big", "errors": [too_large(size, limit)]}]
            published = await Published(vhost_amqp_url).messages(expect_events=1)
            # Only a4 changed; big is neither updated nor deleted: an invalid item keeps its asset.
            assert [e.asset_id for m in published for e in m.events] == ["a4"], run_number
            await apply_published(db, provider_id, published)
    assert await db.fetchval(
        "SELECT NOT deleted FROM assets WHERE provider_id = $1 AND asset_id = 'big'", provider_id
    )


async def test_an_item_that_does_not_parse_says_where_within_it(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    lines = [json.dumps(asset("a0")), '{"id": "a1", "name": }', json.dumps(asset("a2"))]
    url = feed_server.serve("/feed.jsonl", body("\n".join(lines).encode() + b"\n"))
    feed_id = await add_feed(db, provider_id, url, fmt="jsonl")
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert run["status"] == "ok" and run["counts"]["created"] == 2
    assert run["errors"] == [
        {
            "index": 1,
            "id": "a1",
            "errors": [
                {
                    "pointer": "",
                    "message": "invalid JSON: Expecting value at line 1 column 22 of item 1",
                }
            ],
        }
    ]
