"""How a run ends when the feed cannot be fetched or read: retries, refusals, caps, bad bodies."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from rwasync.platform.db import Database
from rwasync.schema.timestamps import utc_now
from tests.integration.feed_poller.harness import (
    FeedServer,
    Published,
    add_feed,
    asset,
    body,
    chunked,
    feed_body,
    poller_settings,
    redirect,
    running_poller,
    status,
    trigger,
    wait_for_run,
)

pytestmark = pytest.mark.integration


def good_feed() -> bytes:
    return feed_body([asset("a1")], timestamp=utc_now() - timedelta(minutes=1))


async def run_once(
    database_url: str,
    amqp_url: str,
    db: Database,
    provider_id: str,
    url: str,
    **settings: Any,
) -> Any:
    feed_id = await add_feed(db, provider_id, url)
    async with running_poller(poller_settings(database_url, amqp_url, **settings)):
        return await wait_for_run(db, await trigger(db, feed_id))


async def test_a_server_error_is_retried(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed.json", status(500), body(good_feed()))
    run = await run_once(database_url, vhost_amqp_url, db, provider_id, url, retry_delay=0.2)
    assert run["status"] == "ok", run["reason"]
    assert feed_server.hits["/feed.json"] == 2
    assert len(await Published(vhost_amqp_url).messages(expect_events=1)) == 1


async def test_server_errors_fail_the_run_after_every_try(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed.json", status(503))
    run = await run_once(database_url, vhost_amqp_url, db, provider_id, url, fetch_tries=3)
    assert (run["status"], run["reason_code"]) == ("failed", "http_status")
    assert "503" in run["reason"] and "3 tries" in run["reason"]
    assert feed_server.hits["/feed.json"] == 3
    assert run["finished_at"] is not None


async def test_a_client_error_fails_at_once(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    url = feed_server.url("/missing.json")
    run = await run_once(database_url, vhost_amqp_url, db, provider_id, url)
    assert (run["status"], run["reason_code"]) == ("failed", "http_status")
    assert "404" in run["reason"]
    assert feed_server.hits["/missing.json"] == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_feed_is_refused_without_the_allow_list(
    database_url: str,
    vhost_amqp_url: str,
    db: Database,
    provider_id: str,
    feed_server: FeedServer,
    host: str,
) -> None:
    # An IP literal is refused before connecting; a name once it resolves to loopback.
    feed_server.serve("/feed.json", body(good_feed()))
    url = feed_server.url("/feed.json", host=host)
    run = await run_once(
        database_url, vhost_amqp_url, db, provider_id, url, RWASYNC_FEED_ALLOWED_NETWORKS=""
    )
    assert (run["status"], run["reason_code"]) == ("failed", "address_refused")
    assert feed_server.hits["/feed.json"] == 0


async def test_a_redirect_to_a_refused_address_fails_the_run(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    feed_id = await add_feed(
        db, provider_id, feed_server.serve("/metadata", redirect("http://169.254.169.254/latest"))
    )
    # ::1 is loopback too, but only 127.0.0.0/8 is allowed here.
    v6_id = await add_feed(
        db, provider_id, feed_server.serve("/v6", redirect(f"http://[::1]:{feed_server.port}/x"))
    )
    moved_id = await add_feed(db, provider_id, feed_server.serve("/moved", redirect("/feed.json")))
    feed_server.serve("/feed.json", body(good_feed()))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        metadata = await wait_for_run(db, await trigger(db, feed_id))
        v6 = await wait_for_run(db, await trigger(db, v6_id))
        moved = await wait_for_run(db, await trigger(db, moved_id))
    assert (metadata["status"], metadata["reason_code"]) == ("failed", "address_refused")
    assert "169.254.169.254" in metadata["reason"]
    assert (v6["status"], v6["reason_code"]) == ("failed", "address_refused")
    # A redirect within allowed addresses is followed.
    assert moved["status"] == "ok", moved["reason"]
    assert feed_server.hits["/feed.json"] == 1


async def test_a_redirect_to_a_url_with_credentials_fails_the_run_sending_none(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """Registration refuses `user:pw@` in a feed URL, but a redirect hop carrying it was
    followed, aiohttp sending the pair as Basic credentials (hostile trial)."""
    target = f"http://u:p@127.0.0.1:{feed_server.port}/feed.json"
    feed_id = await add_feed(db, provider_id, feed_server.serve("/to-creds", redirect(target)))
    feed_server.serve("/feed.json", body(good_feed()))
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        run = await wait_for_run(db, await trigger(db, feed_id))
    assert (run["status"], run["reason_code"]) == ("failed", "fetch_error"), run
    assert "carries credentials (user:password@)" in run["reason"], run
    assert "u:p" not in run["reason"]
    assert feed_server.hits["/feed.json"] == 0


async def test_a_url_a_fetch_cannot_use_fails_the_run_as_a_fetch_error(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A redirect's malformed Location, and a URL stored before registration refused its kind,
    end the run `fetch_error` naming it, not `internal_error`."""
    redirected = [
        await add_feed(db, provider_id, feed_server.serve(f"/to-{n}", redirect(location)))
        for n, location in enumerate(("http://[::1/x", "http://a..b/x", "http://h:99999/x"))
    ]
    stored = await add_feed(db, provider_id, feed_server.url("/stored"))
    await db.execute(
        "UPDATE feed_sources SET url = $2 WHERE feed_id = $1",
        stored,
        f"http://127.0.0.1:{feed_server.port}99999/stored",
    )
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        runs = [await wait_for_run(db, await trigger(db, f)) for f in (*redirected, stored)]
    for run in runs:
        assert (run["status"], run["reason_code"]) == ("failed", "fetch_error"), run["reason"]
    assert "Location" in runs[0]["reason"] and "feed's URL" in runs[3]["reason"]


async def test_a_body_over_the_size_cap_fails_the_run(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    streamed = await add_feed(db, provider_id, feed_server.serve("/big", chunked(b" " * 1024, 64)))
    declared = await add_feed(db, provider_id, feed_server.serve("/declared", body(b" " * 9000)))
    settings = poller_settings(database_url, vhost_amqp_url, max_body_bytes=8192)
    async with running_poller(settings):
        runs = [await wait_for_run(db, await trigger(db, f)) for f in (streamed, declared)]
    for run in runs:
        assert (run["status"], run["reason_code"]) == ("failed", "size_limit"), run["reason"]
    assert feed_server.hits["/big"] == 1 and feed_server.hits["/declared"] == 1


async def test_a_stalled_body_times_out(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    release = asyncio.Event()

    async def stalling(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"timestamp": ')
        await release.wait()
        return response

    url = feed_server.serve("/stall", stalling)
    run = await run_once(
        database_url, vhost_amqp_url, db, provider_id, url, min_rate_seconds=0.5, fetch_tries=2
    )
    release.set()
    assert (run["status"], run["reason_code"]) == ("failed", "timeout"), run["reason"]
    assert feed_server.hits["/stall"] == 2


async def test_unreadable_feeds_fail_and_short_ones_are_held(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    ahead = utc_now() + timedelta(minutes=10)
    now = utc_now() - timedelta(minutes=1)
    cases = {
        "/not-json": (b"{oops", "failed", "parse_error"),
        "/future": (feed_body([asset("a1")], timestamp=ahead), "failed", "future_timestamp"),
        "/truncated": (feed_body([asset("a1")], timestamp=now, total=2), "held", "truncated"),
        "/too-many": (
            feed_body([asset("a1"), asset("a2")], timestamp=now, total=1),
            "failed",
            "parse_error",
        ),
    }
    feed_ids = {
        path: await add_feed(db, provider_id, feed_server.serve(path, body(content)))
        for path, (content, _, _) in cases.items()
    }
    async with running_poller(poller_settings(database_url, vhost_amqp_url)):
        for path, feed_id in feed_ids.items():
            run = await wait_for_run(db, await trigger(db, feed_id))
            _, expected_status, expected_code = cases[path]
            assert (run["status"], run["reason_code"]) == (expected_status, expected_code), path
            assert run["reason"] and run["finished_at"] is not None
        assert await Published(vhost_amqp_url).messages(expect_events=0, timeout=1) == []


async def test_what_a_server_sends_is_quoted_bounded_and_escaped_in_the_runs_reason(
    database_url: str, vhost_amqp_url: str, db: Database, provider_id: str, feed_server: FeedServer
) -> None:
    """A reason quotes the server's bytes (aiohttp's bad status line, a CSV header cell): a
    hostile trial stored 5 KB of them, line breaks and terminal escapes as sent, in the run's
    reason, which `rwasync feed runs` prints."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"\x1b[2J\x1b[31mPWNED" + b"C" * 5000 + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cell = "x\x1b[2J\u202e" + "y" * 5000
    csv = f"id,{cell},{cell}\na1,1,2\n".encode()
    feed_ids = [
        await add_feed(db, provider_id, f"http://127.0.0.1:{port}/feed.json"),
        await add_feed(db, provider_id, feed_server.serve("/f.csv", body(csv)), fmt="csv"),
    ]
    try:
        async with running_poller(poller_settings(database_url, vhost_amqp_url, fetch_tries=1)):
            runs = [await wait_for_run(db, await trigger(db, feed_id)) for feed_id in feed_ids]
    finally:
        server.close()
    assert [(run["status"], run["reason_code"]) for run in runs] == [
        ("failed", "fetch_error"),
        ("failed", "parse_error"),
    ], runs
    for run in runs:
        reason = run["reason"]
        assert len(reason) <= 1000 and reason.endswith("…"), reason
        assert reason.isprintable(), reason  # no line break, escape or bidi override as sent
    assert "Bad status line" in runs[0]["reason"], runs[0]
    assert "x\\x1b[2J\\u202eyyy" in runs[1]["reason"], runs[1]
