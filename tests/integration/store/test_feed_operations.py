"""The provider-scoped feed operations the provider API calls (`rwasync.store.feeds`), and the
validation preview: real Postgres, a feed served on 127.0.0.1 for the preview."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from rwasync.feeds.auth import FeedSecrets
from rwasync.feeds.fetch import FetchLimits
from rwasync.platform.db import Database
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.feeds import FeedSettingInvalid
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store import feed_preview, feed_settings, feeds
from rwasync.store.feeds import FeedIdTaken, FeedNotFound, RunNotDecidable, RunNotFound
from tests.integration.feed_poller.harness import FeedServer, asset, body, feed_body, store_asset

pytestmark = pytest.mark.integration

POLICY = AddressPolicy.from_setting("127.0.0.0/8")
SECRETS = FeedSecrets(FeedSecrets.new_key())


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def two_providers(db: Database) -> tuple[str, str]:
    for provider in ("prv_a", "prv_b"):
        await db.execute("INSERT INTO providers (provider_id, name) VALUES ($1, $1)", provider)
    return "prv_a", "prv_b"


def settings(**document: Any) -> feed_settings.FeedSettings:
    return feed_settings.parse_feed_settings(
        {"url": "https://feeds.example.com/a.json", **document}, POLICY
    )


async def put(
    db: Database, provider: str, feed_id: str, **document: Any
) -> tuple[dict[str, Any], bool]:
    async with db.connection() as conn:
        return await feeds.put_feed(
            conn,
            provider_id=provider,
            feed_id=feed_id,
            settings=settings(**document),
            secrets=SECRETS,
        )


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"url": "http://10.0.0.1/feed.json"}, "/url"),
        ({"url": "http://0xa9.0xfe.0xa9.0xfe/latest"}, "/url"),
        ({"url": "http://[::ffff:192.168.0.1]/feed.json"}, "/url"),
        ({"url": "http://[64:ff9b::10.0.0.1]/feed.json"}, "/url"),
        ({"url": "http://167772161/feed.json"}, "/url"),
        ({"url": "http://012.1/feed.json"}, "/url"),
        ({"url": "https://user:pw@feeds.example.com/a"}, "/url"),
        # URLs a fetch cannot use: a port out of range or not a number, a host IDNA refuses
        ({"url": "http://feeds.example.com:99999/a"}, "/url"),
        ({"url": "http://feeds.example.com:-1/a"}, "/url"),
        ({"url": "http://feeds.example.com:0/a"}, "/url"),
        ({"url": "http://a..b/a"}, "/url"),
        ({"url": "http://xn--/a"}, "/url"),
        ({"url": f"http://{'a' * 64}.example.com/a"}, "/url"),
        ({"url": "http://exa mple.com/a"}, "/url"),
        ({"url": "http://[::1/a"}, "/url"),
        ({"format": "xml"}, "/format"),
        ({"schedule": "0 3 * *"}, "/schedule"),
        ({"schedule": 5}, "/schedule"),
        ({"auth": {"type": "basic", "username": "u"}}, "/auth/password"),
        ({"deletion_threshold": {"percent": 120}}, "/deletion_threshold/percent"),
        ({"deletion_threshold": {"min_count": -1}}, "/deletion_threshold/min_count"),
        ({"enabled": "yes"}, "/enabled"),
        ({"colour": "red"}, "/colour"),
    ],
)
def test_a_bad_registration_names_the_field(document: dict[str, Any], pointer: str) -> None:
    with pytest.raises(FeedSettingInvalid) as caught:
        feed_settings.parse_feed_settings(
            {"url": "https://feeds.example.com/a.json", **document}, POLICY
        )
    assert caught.value.pointer == pointer


def test_credentials_without_a_key_to_seal_them_are_reported_with_the_other_problems() -> None:
    # (a PUT with a bad format and a token, on a service without RWASYNC_FEED_SECRETS_KEY,
    # named only /format: the /auth problem came to light once /format was fixed)
    document = {
        "url": "https://feeds.example.com/a.json",
        "format": "xml",
        "auth": {"type": "bearer", "token": "t"},
    }
    keyless = FeedSecrets("")
    with pytest.raises(FeedSettingInvalid) as caught:
        feed_settings.parse_feed_settings(document, POLICY, secrets=keyless)
    assert [error.pointer for error in caught.value.errors] == ["/format", "/auth"]
    # with a key to seal with, or no feed credentials, only the format is wrong
    for secrets, auth in ((SECRETS, document["auth"]), (keyless, {"type": "none"})):
        with pytest.raises(FeedSettingInvalid) as caught:
            feed_settings.parse_feed_settings({**document, "auth": auth}, POLICY, secrets=secrets)
        assert [error.pointer for error in caught.value.errors] == ["/format"]


@pytest.mark.parametrize(
    "url",
    [
        "https://feeds.example.com:8443/a.json",
        "https://bücher.example/a.json",
        "https://xn--bcher-kva.example/a.json",
        "https://feeds_1.example.com./a.json",
    ],
)
def test_a_usable_url_registers(url: str) -> None:
    assert feed_settings.parse_feed_settings({"url": url}, POLICY).url == url


async def test_put_creates_then_replaces_and_never_returns_the_secret(
    db: Database, two_providers: tuple[str, str]
) -> None:
    a, b = two_providers
    created, is_new = await put(
        db,
        a,
        "main",
        format="csv",
        schedule="0 3 * * *",
        auth={"type": "bearer", "token": "tok-secret"},
        deletion_threshold={"percent": 5, "min_count": 2},
    )
    assert is_new and created["feed_id"] == "main" and created["provider_id"] == a
    assert created["schedule"] == "0 3 * * *" and created["next_run_at"] is not None
    assert created["auth"] == {"type": "bearer"} and created["deletion_threshold"]["percent"] == 5.0
    replaced, is_new = await put(db, a, "main", schedule="24h", enabled=False)
    assert not is_new and replaced["schedule"] == "1d" and replaced["next_run_at"] is None
    assert replaced["auth"] == {"type": "none"} and replaced["enabled"] is False
    assert replaced["created_at"] == created["created_at"]
    sealed = await db.fetchval("SELECT auth_secret FROM feed_sources WHERE feed_id = 'main'")
    assert sealed is None
    with pytest.raises(FeedIdTaken):
        await put(db, b, "main")
    with pytest.raises(FeedSettingInvalid) as caught:
        await put(db, a, "bad id")
    assert caught.value.pointer == "/feed_id"


async def test_another_providers_feed_and_runs_are_not_found(
    db: Database, two_providers: tuple[str, str]
) -> None:
    a, b = two_providers
    await put(db, a, "feed-a")
    async with db.connection() as conn:
        run_id = await feeds.request_run(conn, "feed-a", provider_id=a)
        assert (await feeds.get_run(conn, run_id, feed_id="feed-a", provider_id=a)) is not None
        assert await feeds.get_run(conn, run_id, provider_id=b) is None
        assert await feeds.get_run(conn, run_id, feed_id="other", provider_id=a) is None
        for attempt in (
            feeds.request_run(conn, "feed-a", provider_id=b),
            feeds.get_feed(conn, "feed-a", provider_id=b),
            feeds.list_runs(conn, "feed-a", provider_id=b),
        ):
            with pytest.raises(FeedNotFound):
                await attempt
        await db.execute("UPDATE feed_runs SET status = 'held' WHERE run_id = $1", run_id)
        with pytest.raises(RunNotFound):
            await feeds.decide_run(conn, run_id, "reject", provider_id=b)
        assert (await feeds.list_feeds(conn, b))["items"] == []
        await feeds.decide_run(conn, run_id, "reject", feed_id="feed-a", provider_id=a)
        with pytest.raises(RunNotDecidable):
            await feeds.decide_run(conn, run_id, "approve", provider_id=a)


@pytest.mark.parametrize(
    ("later", "compared"),
    [("ok", True), ("held", True), ("rejected", True), ("failed", True), ("not_modified", False)],
)
async def test_a_held_run_cannot_be_approved_once_a_later_run_read_a_snapshot(
    db: Database, two_providers: tuple[str, str], later: str, compared: bool
) -> None:
    """Approving an older held snapshot after a newer one would undo the newer (delete what it
    lists). A later run that compared a snapshot (whatever it ended as: a run failing while it
    publishes did compare) or found the body unchanged supersedes it; one that failed before
    comparing (a fetch error), or is still under way, does not. Rejecting it applies nothing, so
    a superseded run can still be rejected (to clear it away), once no later run is held."""
    a, _ = two_providers
    await put(db, a, "feed-a")
    async with db.connection() as conn:
        held = await feeds.request_run(conn, "feed-a", provider_id=a)
        failed = await feeds.request_run(conn, "feed-a", provider_id=a)
        newer = await feeds.request_run(conn, "feed-a", provider_id=a)
        ended = "UPDATE feed_runs SET status = $2, compared_at = $3 WHERE run_id = $1"
        await db.execute(ended, held, "held", utc_now())
        await db.execute(ended, failed, "failed", None)
        await db.execute(ended, newer, "running", None)
        assert "approved" not in (await feeds.get_run(conn, held) or {})
        await feeds.decide_run(conn, held, "approve", provider_id=a)
        # until the poller applies it, the held run says it is approved (a partner's trial read
        # `held` alone and could not tell its approval had been taken)
        assert (await feeds.get_run(conn, held) or {}).get("approved") is True
        await db.execute("UPDATE feed_runs SET decision = NULL WHERE run_id = $1", held)
        await db.execute(ended, newer, later, utc_now() if compared else None)
        with pytest.raises(RunNotDecidable, match=f"superseded by run {newer}"):
            await feeds.decide_run(conn, held, "approve", provider_id=a)
        if later == "held":  # only the latest held run may be decided: that one first
            with pytest.raises(RunNotDecidable, match=f"run {newer} is; decide that one first"):
                await feeds.decide_run(conn, held, "reject", provider_id=a)
            await feeds.decide_run(conn, newer, "reject", provider_id=a)
        await feeds.decide_run(conn, held, "reject", provider_id=a)
        assert await db.fetchval("SELECT status FROM feed_runs WHERE run_id = $1", held) == (
            "rejected"
        )


async def test_lists_page_with_cursors_runs_newest_first(
    db: Database, two_providers: tuple[str, str]
) -> None:
    a, _ = two_providers
    for n in range(5):
        await put(db, a, f"f{n}")
    async with db.connection() as conn:
        run_ids = [await feeds.request_run(conn, "f0", provider_id=a) for _ in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            page = await feeds.list_feeds(conn, a, cursor=cursor, limit=2)
            seen.extend(f["feed_id"] for f in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"f{n}" for n in range(5)]
        first = await feeds.list_runs(conn, "f0", provider_id=a, limit=3)
        rest = await feeds.list_runs(
            conn, "f0", provider_id=a, cursor=first["next_cursor"], limit=3
        )
        assert rest["next_cursor"] is None
        assert [r["run_id"] for r in first["items"] + rest["items"]] == run_ids[::-1]
        # nonsense, a well-formed cursor whose instant is before year 1 once in UTC, and the
        # feeds listing's cursor (read as a position among runs, it gave an empty page)
        early = base64.urlsafe_b64encode(b'["runs","0001-01-01T00:00:00+01:00","x"]').decode()
        of_feeds = (await feeds.list_feeds(conn, a, limit=2))["next_cursor"]
        for cursor in ("not-a-cursor", early, of_feeds):
            with pytest.raises(FeedSettingInvalid) as caught:
                await feeds.list_runs(conn, "f0", provider_id=a, cursor=cursor)
            assert caught.value.pointer == "/cursor"


async def test_the_preview_reports_changes_and_holds_without_writing(
    db: Database, two_providers: tuple[str, str], feed_server: FeedServer
) -> None:
    a, _ = two_providers
    snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    long_ago = snapshot - timedelta(days=30)
    for asset_id in ("kept", "gone-1", "gone-2"):
        await store_asset(db, a, asset_id, updated_at=long_ago)
    items = [
        asset("kept", updated_at=timestamp_text(snapshot)),
        asset("new"),
        asset("new"),
        asset("bad", status="x"),
    ]
    content = feed_body(items, timestamp=snapshot)
    url = feed_server.serve("/feed.json", body(content))
    before = await db.fetchval("SELECT count(*) FROM assets")
    async with db.connection() as conn:
        by_url = await feed_preview.preview_url(
            conn,
            provider_id=a,
            settings=feed_settings.parse_feed_settings({"url": url}, POLICY),
            policy=POLICY,
            limits=FetchLimits(tries=1),
        )
        inline = await feed_preview.preview_body(conn, content, provider_id=a)
        strict = await feed_preview.preview_body(
            conn,
            content,
            provider_id=a,
            threshold=feed_settings.parse_feed_settings(
                {"url": url, "deletion_threshold": {"percent": 10, "min_count": 1}}, POLICY
            ).threshold,
        )
        broken = await feed_preview.preview_body(conn, b"{oops", provider_id=a)
        refused = await feed_preview.preview_url(
            conn,
            provider_id=a,
            settings=feed_settings.parse_feed_settings({"url": url}, POLICY),
            policy=AddressPolicy(),
            limits=FetchLimits(tries=1),
        )
    assert by_url == inline
    assert inline["status"] == "ok" and inline["valid"] is False  # one invalid item
    assert inline["preview"] == {"create": 1, "update": 1, "unchanged": 0, "delete": 2}
    assert inline["counts"] == {"seen": 4, "invalid": 1}
    # rendered like every other timestamp in an answer (microseconds and Z), as the run's is
    assert inline["snapshot_time"] == timestamp_text(snapshot)
    assert inline["snapshot_time"].endswith(".000000Z")
    assert [(e["index"], e["errors"][0]["pointer"]) for e in inline["errors"]] == [
        (1, "/id"),
        (3, "/status"),
    ]
    assert strict["status"] == "held" and strict["reason_code"] == "deletion_threshold"
    assert broken == {
        "valid": False,
        "status": "failed",
        "reason_code": "parse_error",
        "reason": broken["reason"],
    }
    assert refused["status"] == "failed" and refused["reason_code"] == "address_refused"
    assert await db.fetchval("SELECT count(*) FROM assets") == before
    assert await db.fetchval("SELECT count(*) FROM feed_runs") == 0
    assert json.dumps(inline)
