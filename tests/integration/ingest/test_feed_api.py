"""The provider's feed API through the real ingest-api, with a real feed-poller on the same
database and vhost and the provider's feed served on 127.0.0.1: a feed registered, run and
watched over HTTP; each hold approved and rejected over HTTP; another provider's feed and runs
not found; bad settings named; the feed preview by URL and by body in every format."""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from rwasync.feeds.auth import FeedSecrets
from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from rwasync.schema.timestamps import utc_now
from rwasync.store import feed_settings
from rwasync.store.tenants import digest, issue_reader_token, new_id
from tests.integration.cli.test_commands import rwasync
from tests.integration.feed_poller.harness import (
    FeedServer,
    asset,
    body,
    feed_body,
    poller_settings,
    running_poller,
    store_asset,
)
from tests.integration.ingest.conftest import (
    Provider,
    create_provider,
    ingest_settings,
    readiness,
    serve,
)
from tests.integration.ingest.helpers import JSON, Client, problem
from tests.integration.ingest.test_access import create_partner, tenant
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SECRETS_KEY = FeedSecrets.new_key()
FINISHED = {"ok", "not_modified", "held", "failed", "rejected"}


@pytest.fixture(scope="module")
async def feed_api(ingest_database_url: str, ingest_amqp_url: str) -> AsyncIterator[Client]:
    """ingest-api allowing feeds on 127.0.0.0/8 (as `make run` does), with a feed-poller running
    beside it on the same database and vhost."""
    settings = ingest_settings(
        ingest_database_url,
        ingest_amqp_url,
        RWASYNC_FEED_ALLOWED_NETWORKS="127.0.0.0/8",
        RWASYNC_FEED_SECRETS_KEY=SECRETS_KEY,
        feed_preview_timeout=10,
    )
    client = await serve(create_app(settings))
    try:
        await eventually(
            lambda: readiness(client),
            lambda found: found["status"] == "ready",
            timeout=30,
            what="ingest-api ready",
        )
        poller = poller_settings(
            ingest_database_url, ingest_amqp_url, RWASYNC_FEED_SECRETS_KEY=SECRETS_KEY
        )
        async with running_poller(poller):
            yield client
    finally:
        await client.close()


@pytest.fixture
async def feeds_host() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    await server.close()


async def call(
    client: Client,
    method: str,
    path: str,
    who: Provider | dict[str, str],
    document: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    sent = {**(who.bearer if isinstance(who, Provider) else who), **(headers or {})}
    data = None
    if document is not None:
        data, sent = json.dumps(document), {**JSON, **sent}
    response = await client.request(method, path, data=data, headers=sent)
    text = await response.text()
    return response.status, json.loads(text) if text else None, dict(response.headers)


async def put_feed(client: Client, who: Provider, feed_id: str, **document: Any) -> dict[str, Any]:
    status, feed, _ = await call(client, "PUT", f"/v1/feeds/{feed_id}", who, document)
    assert status == 200, feed
    return dict(feed)


async def run_feed(client: Client, who: Provider, feed_id: str) -> dict[str, Any]:
    """Trigger a run over the API and watch it over the API until it ends."""
    status, requested, headers = await call(client, "POST", f"/v1/feeds/{feed_id}/runs", who)
    assert status == 202 and set(requested) == {"run_id"}, requested
    location = headers["Location"]
    assert location == f"/v1/feeds/{feed_id}/runs/{requested['run_id']}"
    return await watch(client, who, location)


async def watch(client: Client, who: Provider, location: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        status, run, _ = await call(client, "GET", location, who)
        assert status == 200, run
        return dict(run)

    return await eventually(
        read, lambda run: run["status"] in FINISHED, timeout=30, what=f"run at {location}"
    )


def snapshot_at() -> datetime:
    return utc_now().replace(microsecond=0) - timedelta(minutes=1)


async def test_a_provider_registers_runs_and_watches_its_feed(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    provider = await create_provider(store)
    items = [asset(f"house-{n}") for n in range(4)] + [asset("broken", status="for_sale")]
    url = feeds_host.serve("/acme.json", body(feed_body(items, timestamp=snapshot_at())))
    feed = await put_feed(
        feed_api,
        provider,
        "acme-main",
        url=url,
        schedule="24h",
        auth={"type": "bearer", "token": "tok-very-secret"},
    )
    assert feed["feed_id"] == "acme-main" and feed["provider_id"] == provider.provider_id
    assert feed["auth"] == {"type": "bearer"} and feed["schedule"] == "1d"
    assert "tok-very-secret" not in json.dumps(feed)
    sealed = await store.fetchval(
        "SELECT auth_secret FROM feed_sources WHERE feed_id = 'acme-main'"
    )
    assert sealed is not None and b"tok-very-secret" not in bytes(sealed)

    status, listed, _ = await call(feed_api, "GET", "/v1/feeds", provider)
    assert status == 200 and listed == {"items": [feed], "next_cursor": None}
    status, read, _ = await call(feed_api, "GET", "/v1/feeds/acme-main", provider)
    assert status == 200 and read == feed

    run = await run_feed(feed_api, provider, "acme-main")
    assert run["status"] == "ok", run
    assert run["counts"] == {
        "seen": 5,
        "created": 4,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "deleted": 0,
        "invalid": 1,
        "held_deletions": 0,
    }
    assert [(e["index"], e["id"], e["errors"][0]["pointer"]) for e in run["errors"]] == [
        (4, "broken", "/status")
    ]
    # The poller sent the feed's credentials, which only it can open.
    again = await run_feed(feed_api, provider, "acme-main")
    assert again["status"] == "not_modified"
    status, runs, _ = await call(feed_api, "GET", "/v1/feeds/acme-main/runs?limit=1", provider)
    assert status == 200 and [r["run_id"] for r in runs["items"]] == [again["run_id"]]
    status, rest, _ = await call(
        feed_api,
        "GET",
        f"/v1/feeds/acme-main/runs?limit=1&cursor={runs['next_cursor']}",
        provider,
    )
    assert [r["run_id"] for r in rest["items"]] == [run["run_id"]]
    assert rest["next_cursor"] is None


async def test_a_replacement_keeps_the_runs_and_an_idempotent_trigger_runs_once(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    provider = await create_provider(store)
    url = feeds_host.serve("/idem.json", body(feed_body([asset("a")], timestamp=snapshot_at())))
    feed_id = new_id("feed")
    await put_feed(feed_api, provider, feed_id, url=url)
    key = {"Idempotency-Key": "trigger-1"}
    first = await call(feed_api, "POST", f"/v1/feeds/{feed_id}/runs", provider, headers=key)
    repeat = await call(feed_api, "POST", f"/v1/feeds/{feed_id}/runs", provider, headers=key)
    assert first[0] == repeat[0] == 202 and first[1] == repeat[1]
    assert repeat[2].get("Idempotent-Replayed") == "true"
    await watch(feed_api, provider, first[2]["Location"])
    replaced = await put_feed(feed_api, provider, feed_id, url=url, enabled=False, format="json")
    assert replaced["enabled"] is False and replaced["next_run_at"] is None
    status, runs, _ = await call(feed_api, "GET", f"/v1/feeds/{feed_id}/runs", provider)
    assert status == 200 and [r["run_id"] for r in runs["items"]] == [first[1]["run_id"]]


# --- schedules: next_run_at as the provider reads it ----------------------------------------------


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def read_feed(client: Client, who: Provider, feed_id: str) -> dict[str, Any]:
    """The feed as GET and the listing show it (the same object)."""
    status, feed, _ = await call(client, "GET", f"/v1/feeds/{feed_id}", who)
    assert status == 200, feed
    status, listed, _ = await call(client, "GET", "/v1/feeds", who)
    assert [f for f in listed["items"] if f["feed_id"] == feed_id] == [feed]
    return dict(feed)


async def test_a_disabled_feed_has_no_next_run_and_enabled_again_runs_once_soon(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    """A disabled feed showed no time it would never run at only when disabled by a PUT; enabled
    again it waited a whole interval (a day for a daily feed). Now it has no next run while
    disabled, and enabled again it runs once within the jitter, then on its schedule."""
    provider = await create_provider(store)
    url = feeds_host.serve("/resumed.json", body(feed_body([asset("r")], timestamp=snapshot_at())))
    feed_id = "resumed"
    daily = await put_feed(feed_api, provider, feed_id, url=url, schedule="24h")
    assert moment(daily["next_run_at"]) > utc_now() + timedelta(hours=23)
    off = await put_feed(feed_api, provider, feed_id, url=url, schedule="24h", enabled=False)
    assert off["enabled"] is False and off["next_run_at"] is None
    assert await read_feed(feed_api, provider, feed_id) == off
    assert feeds_host.hits["/resumed.json"] == 0

    before = utc_now()
    on = await put_feed(feed_api, provider, feed_id, url=url, schedule="24h")
    # Soon: within the jitter (10 % of the interval, at most 5 minutes), not a day away.
    assert before <= moment(on["next_run_at"]) <= utc_now() + timedelta(minutes=5), on
    assert await read_feed(feed_api, provider, feed_id) == on

    # Off again and back on every minute (up to 6 s of jitter): the poller queues that one run.
    await put_feed(feed_api, provider, feed_id, url=url, schedule="24h", enabled=False)
    before = utc_now()
    on = await put_feed(feed_api, provider, feed_id, url=url, schedule="60s")
    assert before <= moment(on["next_run_at"]) <= utc_now() + timedelta(seconds=6), on
    runs_path = f"/v1/feeds/{feed_id}/runs"

    async def runs() -> list[dict[str, Any]]:
        return list((await call(feed_api, "GET", runs_path, provider))[1]["items"])

    [scheduled] = await eventually(runs, bool, timeout=30, what="the run of the enabled feed")
    assert scheduled["trigger"] == "schedule"
    run = await watch(feed_api, provider, f"{runs_path}/{scheduled['run_id']}")
    assert run["status"] == "ok", run
    # ...then on its schedule: one interval (plus up to 10 %) after that run was queued.
    after = moment((await read_feed(feed_api, provider, feed_id))["next_run_at"])
    ahead = after - moment(run["requested_at"])
    assert timedelta(seconds=59) < ahead < timedelta(seconds=67), ahead


async def test_a_new_schedule_counts_from_now_and_the_same_one_keeps_its_next_run(
    feed_api: Client, store: Database
) -> None:
    """A feed moved from daily to every 5 minutes runs within 5 minutes (and a cron one at the
    new expression's next time); sending the same settings again does not put its run off."""
    provider = await create_provider(store)
    url = "http://127.0.0.1:9/moved.json"
    feed_id = "moved"
    daily = await put_feed(feed_api, provider, feed_id, url=url, schedule="24h")
    again = await put_feed(feed_api, provider, feed_id, url=url, schedule="1d", format="json")
    assert again["next_run_at"] == daily["next_run_at"]
    assert again["updated_at"] > daily["updated_at"]

    before = utc_now()
    often = await put_feed(feed_api, provider, feed_id, url=url, schedule="5m")
    assert often["schedule"] == "5m"
    due = moment(often["next_run_at"])
    assert before + timedelta(seconds=300) <= due <= utc_now() + timedelta(seconds=330), often
    assert await read_feed(feed_api, provider, feed_id) == often

    nightly = await put_feed(feed_api, provider, feed_id, url=url, schedule="0 3 * * *")
    at_three = moment(nightly["next_run_at"])
    # 03:00, plus up to 5 minutes of jitter
    assert at_three.hour == 3 and at_three.minute <= 5 and at_three > utc_now(), nightly
    before = utc_now()
    cron = await put_feed(feed_api, provider, feed_id, url=url, schedule="*/5 * * * *")
    due = moment(cron["next_run_at"])
    # The next multiple of 5 minutes, plus up to 10 % of the 5 minutes to the one after.
    assert before < due <= before + timedelta(minutes=5, seconds=30), cron
    assert due.minute % 5 == 0 or (due - timedelta(seconds=30)).minute % 5 == 0, cron


async def test_a_disabled_feed_triggered_runs_once_and_stays_disabled(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    """docs/api.md 2.8: `enabled: false` keeps a feed off its schedule, and a trigger still runs
    it: the run is answered and done as any other, and the feed keeps no next run."""
    provider = await create_provider(store)
    items = [asset("off-1"), asset("off-2")]
    url = feeds_host.serve("/off.json", body(feed_body(items, timestamp=snapshot_at())))
    await put_feed(feed_api, provider, "off", url=url, schedule="1h", enabled=False)
    run = await run_feed(feed_api, provider, "off")
    assert (run["status"], run["trigger"]) == ("ok", "manual"), run
    assert run["counts"]["created"] == 2
    feed = await read_feed(feed_api, provider, "off")
    assert feed["enabled"] is False and feed["next_run_at"] is None
    status, runs, _ = await call(feed_api, "GET", "/v1/feeds/off/runs", provider)
    assert status == 200 and [r["run_id"] for r in runs["items"]] == [run["run_id"]]


async def test_a_run_requested_approved_or_rejected_takes_no_body(
    feed_api: Client, store: Database
) -> None:
    """The three calls on runs take no body; one sent was ignored (any JSON) and the run
    requested all the same. Now a JSON body is a 400 saying so, another type a 415 (the order of
    every write: the media type first), and nothing is requested; an empty body is none."""
    provider = await create_provider(store)
    await put_feed(feed_api, provider, "bodiless", url="http://127.0.0.1:9/b.json")
    requests = "/v1/feeds/bodiless/runs"
    # the run need not exist: the body is refused before the run is looked for
    calls = (requests, f"{requests}/run_nope/approve", f"{requests}/run_nope/reject")
    for path in calls:
        for sent in (b"{}", b'{"reason":"because"}', b"null"):
            response = await feed_api.post(path, data=sent, headers={**JSON, **provider.bearer})
            refused = await problem(response, 400)
            assert refused["type"].endswith("/unexpected-body"), refused
            assert refused["detail"] == "this call takes no body: send the request without one"
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await feed_api.post(
                path, data=b"run=1", headers={"Content-Type": content_type, **provider.bearer}
            )
            refused = await problem(response, 415)
            assert refused["detail"] == "this call takes no body: send the request without one"
    assert await store.fetchval("SELECT count(*) FROM feed_runs WHERE feed_id = 'bodiless'") == 0
    # No body, an empty one (with or without a Content-Type): requested.
    for headers in ({}, JSON, {"Content-Type": "text/plain"}):
        response = await feed_api.post(requests, data=b"", headers={**headers, **provider.bearer})
        assert response.status == 202, await response.text()
    response = await feed_api.post(requests, headers=provider.bearer)
    assert response.status == 202, await response.text()
    # The description says so.
    document = await (await feed_api.get("/v1/openapi.json")).json()
    for path in ("", "/{run_id}/approve", "/{run_id}/reject"):
        operation = document["paths"][f"/v1/feeds/{{feed_id}}/runs{path}"]["post"]
        answers = operation["responses"]
        assert "requestBody" not in operation
        assert "this call takes none" in answers["400"]["description"], answers["400"]
        assert "takes no body" in answers["415"]["description"], answers["415"]
        assert {"404", "409"} <= set(answers)


HOLDS = {
    "empty_feed": lambda: ([], None),
    "truncated": lambda: ([asset("kept-0"), asset("kept-1")], 3),
    "deletion_threshold": lambda: ([asset("kept-0")], None),
}


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("reason_code", sorted(HOLDS))
async def test_each_hold_is_decided_over_the_api(
    feed_api: Client, store: Database, feeds_host: FeedServer, reason_code: str, decision: str
) -> None:
    provider = await create_provider(store)
    long_ago = utc_now() - timedelta(days=30)
    for n in range(10):
        await store_asset(store, provider.provider_id, f"kept-{n}", updated_at=long_ago)
    items, total = HOLDS[reason_code]()
    path = f"/{reason_code}-{decision}.json"
    url = feeds_host.serve(path, body(feed_body(items, timestamp=snapshot_at(), total=total)))
    feed_id = f"hold-{reason_code}-{decision}".replace("_", "-")
    await put_feed(feed_api, provider, feed_id, url=url)
    held = await run_feed(feed_api, provider, feed_id)
    assert held["status"] == "held" and held["reason_code"] == reason_code, held
    assert held["reason"]
    location = f"/v1/feeds/{feed_id}/runs/{held['run_id']}"

    status, answer, headers = await call(feed_api, "POST", f"{location}/{decision}", provider)
    if decision == "approve":
        assert status == 202 and answer == {"run_id": held["run_id"]}, answer
        assert headers["Location"] == location

        async def read() -> dict[str, Any]:
            return (await call(feed_api, "GET", location, provider))[1]  # type: ignore[no-any-return]

        decided = await eventually(read, lambda run: run["status"] != "held", timeout=30)
        assert decided["status"] == "ok", decided
        expected_deletions = 10 - sum(1 for i in items if i["id"].startswith("kept-"))
        assert decided["counts"]["deleted"] == expected_deletions
    else:
        assert status == 200 and answer["status"] == "rejected", answer
        assert answer["reason_code"] == "rejected_by_operator"
        assert answer["reason"] == "rejected by the provider"
        assert (
            await store.fetchval(
                "SELECT count(*) FROM feed_run_items WHERE run_id = $1", held["run_id"]
            )
            == 0
        )
    # Decided once: a second decision is a conflict.
    status, conflict, _ = await call(feed_api, "POST", f"{location}/reject", provider)
    assert status == 409 and conflict["type"].endswith("/run-not-decidable")


async def test_a_superseded_held_run_is_refused_as_the_cli_refuses_it_and_rejected_in_turn(
    feed_api: Client, store: Database, feeds_host: FeedServer, ingest_database_url: str
) -> None:
    """The provider's 409 and the operator's `rwasync feed approve` say the same words: which
    later run superseded the held one, and what to do instead."""
    provider = await create_provider(store)
    url = feeds_host.serve("/superseded.json", body(feed_body([], timestamp=snapshot_at())))
    await put_feed(feed_api, provider, "superseded", url=url)
    # An empty feed is held; with no ok run before, the same body is compared again.
    older = await run_feed(feed_api, provider, "superseded")
    newer = await run_feed(feed_api, provider, "superseded")
    assert older["status"] == newer["status"] == "held", (older, newer)
    older_path = f"/v1/feeds/superseded/runs/{older['run_id']}"

    status, conflict, _ = await call(feed_api, "POST", f"{older_path}/approve", provider)
    assert status == 409 and conflict["type"].endswith("/run-not-decidable"), conflict
    assert conflict["detail"] == (
        f"run {older['run_id']} was superseded by run {newer['run_id']}, which read the "
        "feed again; approve that one or trigger a new run"
    )
    cli = await asyncio.to_thread(
        rwasync, ingest_database_url, "feed", "approve", older["run_id"], "--json"
    )
    assert (cli.returncode, cli.stdout) == (1, "")
    assert cli.stderr == f"error: {conflict['detail']}\n"

    # Only the feed's latest held run may be decided (409 otherwise, as the contract says: it
    # was rejected all the same, newcomer trial); once that one is decided, the older one is
    # the latest held run again, and rejecting it (which applies nothing) clears it away.
    status, refused, _ = await call(feed_api, "POST", f"{older_path}/reject", provider)
    assert status == 409 and refused["detail"] == (
        f"run {older['run_id']} is not the feed's latest held run: run {newer['run_id']} is; "
        "decide that one first"
    ), refused
    newer_path = f"/v1/feeds/superseded/runs/{newer['run_id']}"
    status, rejected, _ = await call(feed_api, "POST", f"{newer_path}/reject", provider)
    assert status == 200 and rejected["status"] == "rejected", rejected
    status, rejected, _ = await call(feed_api, "POST", f"{older_path}/reject", provider)
    assert status == 200 and rejected["status"] == "rejected", rejected


async def test_another_providers_feed_and_runs_are_not_found(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    owner, stranger = await create_provider(store), await create_provider(store)
    url = feeds_host.serve("/mine.json", body(feed_body([], timestamp=snapshot_at())))
    await put_feed(feed_api, owner, "owned-feed", url=url)
    held = await run_feed(feed_api, owner, "owned-feed")
    assert held["status"] == "held"
    run_path = f"/v1/feeds/owned-feed/runs/{held['run_id']}"
    for method, path in [
        ("GET", "/v1/feeds/owned-feed"),
        ("GET", "/v1/feeds/owned-feed/runs"),
        ("POST", "/v1/feeds/owned-feed/runs"),
        ("GET", run_path),
        ("POST", f"{run_path}/approve"),
        ("POST", f"{run_path}/reject"),
        # The owner's run under another feed's path is not found either.
        ("GET", f"/v1/feeds/other-feed/runs/{held['run_id']}"),
    ]:
        who = owner if "other-feed" in path else stranger
        status, answer, _ = await call(feed_api, method, path, who)
        assert status == 404, (method, path, answer)
        assert answer["type"].endswith("/not-found")
    status, listed, _ = await call(feed_api, "GET", "/v1/feeds", stranger)
    assert listed["items"] == []
    # Feed ids are one namespace: another provider's id cannot be taken over.
    status, taken, _ = await call(feed_api, "PUT", "/v1/feeds/owned-feed", stranger, {"url": url})
    assert status == 409 and taken["type"].endswith("/feed-id-taken")
    assert (await call(feed_api, "GET", run_path, owner))[1]["status"] == "held"


async def test_a_partner_manages_the_feed_of_the_provider_it_names(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    provider = await create_provider(store)
    partner = await create_partner(store, provider)
    url = feeds_host.serve("/partner.json", body(feed_body([asset("p")], timestamp=snapshot_at())))
    status, feed, _ = await call(
        feed_api, "PUT", "/v1/feeds/via-partner", partner, {"url": url}, tenant(provider)
    )
    assert status == 200 and feed["provider_id"] == provider.provider_id
    status, _, _ = await call(feed_api, "GET", "/v1/feeds", partner)
    assert status == 400  # a partner must name the provider
    status, listed, _ = await call(feed_api, "GET", "/v1/feeds", provider)
    assert [f["feed_id"] for f in listed["items"]] == ["via-partner"]


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({}, "/url"),
        ({"url": "ftp://feeds.example.com/a.json"}, "/url"),
        ({"url": "http://10.0.0.1/feed.json"}, "/url"),
        ({"url": "http://0xa9.0xfe.0xa9.0xfe/latest"}, "/url"),
        ({"url": "http://167772161/feed.json"}, "/url"),
        ({"url": "http://012.1/feed.json"}, "/url"),
        ({"url": "http://[::ffff:192.168.0.1]/feed.json"}, "/url"),
        ({"url": "http://[64:ff9b::10.0.0.1]/feed.json"}, "/url"),
        ({"url": "http://0.0.0.0/feed.json"}, "/url"),
        ({"url": "https://user:pw@feeds.example.com/a"}, "/url"),
        ({"format": "xml"}, "/format"),
        ({"schedule": "0 3 * *"}, "/schedule"),
        ({"auth": {"type": "basic", "username": "u"}}, "/auth/password"),
        ({"auth": {"type": "kerberos"}}, "/auth/type"),
        ({"deletion_threshold": {"percent": 120}}, "/deletion_threshold/percent"),
        # a 500 at the store, or stored as 0.0 and failing every run (newcomer trial)
        ({"deletion_threshold": {"percent": "1e-99999"}}, "/deletion_threshold/percent"),
        ({"deletion_threshold": {"percent": "1e-5000"}}, "/deletion_threshold/percent"),
        ({"deletion_threshold": {"min_count": -1}}, "/deletion_threshold/min_count"),
        ({"deletion_threshold": {"min_count": 2**31}}, "/deletion_threshold/min_count"),
        ({"schedule": "232020000000"}, "/schedule"),
        ({"enabled": "yes"}, "/enabled"),
        ({"colour": "red"}, "/colour"),
        ({"schedule": "1h\u0000"}, "/schedule"),
        # blank: it made the feed manual (hybrid trial)
        ({"schedule": ""}, "/schedule"),
        ({"schedule": "   "}, "/schedule"),
        # surrounding blanks: stored as sent, then fetched with %20 (hybrid trial)
        ({"url": "https://feeds.example.com/a.json "}, "/url"),
        ({"url": "\thttps://feeds.example.com/a.json"}, "/url"),
        ({"url": 5}, "/url"),
    ],
)
async def test_bad_settings_are_422_naming_the_field_and_store_nothing(
    feed_api: Client, store: Database, document: dict[str, Any], pointer: str
) -> None:
    provider = await create_provider(store)
    sent = {"url": "https://feeds.example.com/a.json", **document} if document else {}
    status, answer, headers = await call(feed_api, "PUT", "/v1/feeds/bad", provider, sent)
    assert status == 422, answer
    assert headers["Content-Type"].startswith("application/problem+json")
    assert [e["pointer"] for e in answer["errors"]] == [pointer]
    assert (await call(feed_api, "GET", "/v1/feeds", provider))[1]["items"] == []


@pytest.mark.parametrize("feed_id", ["--help", "-x"])
async def test_a_feed_id_the_cli_or_a_url_cannot_carry_is_refused(
    feed_api: Client, store: Database, feed_id: str
) -> None:
    """`--help` as a feed id made `rwasync feed disable "$FEED_ID"` print help and exit 0, the
    feed untouched; `..` is a path segment clients remove, reached only with care (security
    trial). Feeds already stored under such ids are still found."""
    provider = await create_provider(store)
    document = {"url": "https://feeds.example.com/a.json"}
    status, answer, _ = await call(feed_api, "PUT", f"/v1/feeds/{feed_id}", provider, document)
    assert status == 422, answer
    assert answer["errors"] == [
        {"pointer": "/feed_id", "message": "must not start with '-' nor be '.' or '..'"}
    ]
    assert (await call(feed_api, "GET", "/v1/feeds", provider))[1]["items"] == []
    for dots in (".", ".."):  # (aiohttp's client resolves them before sending)
        assert feed_settings.feed_id_rule_broken(dots) == feed_settings.NEW_FEED_ID_RULE
    assert feed_settings.feed_id_rule_broken("a.-") is None


async def test_every_bad_setting_is_reported_at_once_with_its_pointer(
    feed_api: Client, store: Database
) -> None:
    """Feed settings are reported as documents are: every problem in one 422, the feed id's too,
    and the preview's settings form the same way."""
    provider = await create_provider(store)
    sent = {
        "url": "https://feeds.example.com/a.json",
        "format": "xml",
        "schedule": "often",
        "enabled": "yes",
    }
    response = await feed_api.put(
        "/v1/feeds/x", data=json.dumps(sent), headers={**JSON, **provider.bearer}
    )
    answer = await problem(response, 422)
    assert answer["type"].endswith("/invalid-feed-settings")
    assert answer["detail"] == "the feed settings are invalid (3 errors); see errors"
    assert answer["errors"] == [
        {"pointer": "/format", "message": "must be one of json, jsonl, csv"},
        {"pointer": "/schedule", "message": "invalid interval 'often': use e.g. 90s, 15m, 24h, 1d"},
        {"pointer": "/enabled", "message": "must be true or false"},
    ]
    many = {
        "url": "http://10.0.0.1/feed.json",
        "colour": "red",
        "auth": {"type": "basic", "username": "a:b", "realm": "x"},
        "deletion_threshold": {"percent": 120, "min_count": -1},
    }
    status, answer, _ = await call(feed_api, "PUT", "/v1/feeds/bad%20id", provider, many)
    assert status == 422
    assert [e["pointer"] for e in answer["errors"]] == [
        "/feed_id",
        "/colour",
        "/url",
        "/auth/realm",
        "/auth/username",
        "/auth/password",
        "/deletion_threshold/percent",
        "/deletion_threshold/min_count",
    ]
    status, answer, _ = await call(feed_api, "POST", "/v1/validate/feed", provider, sent)
    assert status == 422
    assert [e["pointer"] for e in answer["errors"]] == ["/format", "/schedule", "/enabled"]
    assert (await call(feed_api, "GET", "/v1/feeds", provider))[1]["items"] == []


async def test_a_bad_feed_id_malformed_json_and_wrong_credentials(
    feed_api: Client, store: Database
) -> None:
    provider = await create_provider(store)
    document = {"url": "https://feeds.example.com/a.json"}
    status, answer, _ = await call(feed_api, "PUT", "/v1/feeds/bad%20id", provider, document)
    assert status == 422 and answer["errors"][0]["pointer"] == "/feed_id"
    response = await feed_api.put("/v1/feeds/x", data=b"{oops", headers={**JSON, **provider.bearer})
    await problem(response, 400)
    response = await feed_api.put("/v1/feeds/x", data=b"{}", headers=provider.bearer)
    await problem(response, 415)
    reader = issue_reader_token()
    await store.execute(
        "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, 'r', $2)",
        new_id("rdr"),
        digest(reader),
    )
    for path in ("/v1/feeds", "/v1/feeds/x/runs"):
        response = await feed_api.get(path, headers={"Authorization": f"Bearer {reader}"})
        await problem(response, 401)
    await problem(await feed_api.get("/v1/feeds"), 401)
    response = await feed_api.get("/v1/feeds?limit=0", headers=provider.bearer)
    assert (await problem(response, 400))["errors"][0]["parameter"] == "limit"
    # nonsense, and well-formed cursors whose instant is out of range once in UTC
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        forged = base64.urlsafe_b64encode(orjson.dumps(["feeds", moment, "x"])).decode()
        response = await feed_api.get(f"/v1/feeds?cursor={forged}", headers=provider.bearer)
        assert (await problem(response, 400))["errors"][0]["parameter"] == "cursor"
    # a well-formed cursor whose key no feed can have (a forged one)
    forged = base64.urlsafe_b64encode(orjson.dumps(["feeds", "2026-01-01T00:00:00Z", "a b"]))
    response = await feed_api.get(f"/v1/feeds?cursor={forged.decode()}", headers=provider.bearer)
    assert (await problem(response, 400))["errors"][0]["parameter"] == "cursor"
    response = await feed_api.get("/v1/feeds?cursor=nonsense", headers=provider.bearer)
    assert (await problem(response, 400))["errors"] == [
        {"parameter": "cursor", "message": "is not a cursor this listing returned"}
    ]


# --- POST /v1/validate/feed ----------------------------------------------------------------------

ITEMS = [
    asset("det-1", price={"amount": "52.10", "currency": "USD"}),
    asset("det-2", status="sold"),
    asset("det-3", media=[{"url": "https://img.example.com/3.jpg", "kind": "image"}]),
    asset("det-4", status="for_sale"),
]


def as_csv(items: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = ["id", "updated_at", "status", "name", "price.amount", "price.currency"]
    writer.writerow([*header, "media.0.url", "media.0.kind"])
    for item in items:
        price = item.get("price", {})
        media = item.get("media", [{}])[0]
        writer.writerow(
            [
                *(item["id"], item["updated_at"], item["status"], item["name"]),
                *(price.get("amount", ""), price.get("currency", "")),
                *(media.get("url", ""), media.get("kind", "")),
            ]
        )
    return out.getvalue().encode()


def bodies(snapshot: datetime) -> dict[str, tuple[bytes, dict[str, str], str]]:
    """The same four items in every format: (body, headers, query)."""
    envelope = feed_body(ITEMS, timestamp=snapshot)
    jsonl = b"\n".join(orjson.dumps(item) for item in ITEMS) + b"\n"
    return {
        "envelope": (envelope, JSON, ""),
        "bare array": (orjson.dumps(ITEMS), JSON, ""),
        "json lines": (jsonl, {"Content-Type": "application/x-ndjson"}, ""),
        "csv": (as_csv(ITEMS), {"Content-Type": "text/csv; charset=utf-8"}, ""),
        "gzip encoded csv": (
            gzip.compress(as_csv(ITEMS)),
            {"Content-Type": "text/csv", "Content-Encoding": "gzip"},
            "",
        ),
        "gzip file of json lines": (
            gzip.compress(jsonl),
            {"Content-Type": "application/gzip"},
            "?format=jsonl",
        ),
        # Neither Content-Encoding nor application/gzip: known by gzip's magic bytes, as a run
        # knows a fetched body.
        "gzip csv as text/csv": (gzip.compress(as_csv(ITEMS)), {"Content-Type": "text/csv"}, ""),
        "gzip json lines as json lines": (
            gzip.compress(jsonl),
            {"Content-Type": "application/x-ndjson"},
            "",
        ),
        # ?format= may repeat what the Content-Type says.
        "csv naming its format": (as_csv(ITEMS), {"Content-Type": "text/csv"}, "?format=csv"),
    }


async def test_validate_feed_previews_a_body_in_every_format_and_writes_nothing(
    feed_api: Client, store: Database
) -> None:
    provider = await create_provider(store)
    # Older than the feed's items: det-2 is an update, and `gone` is deleted.
    long_ago = datetime(2025, 1, 1, tzinfo=UTC)
    await store_asset(store, provider.provider_id, "det-2", updated_at=long_ago)
    await store_asset(store, provider.provider_id, "gone", updated_at=long_ago)
    before = (
        await store.fetchval("SELECT count(*) FROM assets"),
        await store.fetchval("SELECT count(*) FROM feed_runs"),
    )
    for name, (content, headers, query) in bodies(snapshot_at()).items():
        response = await feed_api.post(
            f"/v1/validate/feed{query}", data=content, headers={**headers, **provider.bearer}
        )
        text = await response.text()
        assert response.status == 200, (name, text)
        preview = json.loads(text)
        assert preview["status"] == "ok" and preview["valid"] is False, (name, preview)
        assert preview["counts"] == {"seen": 4, "invalid": 1}, name
        assert preview["preview"] == {"create": 2, "update": 1, "unchanged": 0, "delete": 1}, (
            name,
            preview,
        )
        assert [(e["index"], e["id"]) for e in preview["errors"]] == [(3, "det-4")], name
    after = (
        await store.fetchval("SELECT count(*) FROM assets"),
        await store.fetchval("SELECT count(*) FROM feed_runs"),
    )
    assert after == before


async def test_a_gzip_file_body_stops_at_the_body_cap_once_decompressed(
    feed_api: Client, store: Database
) -> None:
    """A body's cap holds decompressed for `application/gzip` as for Content-Encoding, and for a
    body known as gzip by its magic bytes: a bomb of a few kilobytes is not decompressed to the
    poller's much larger cap."""
    provider = await create_provider(store)
    cap = 16 * 1024 * 1024  # RWASYNC_INGEST_MAX_BATCH_BODY_BYTES' default
    bomb = gzip.compress(b"\n" * (cap + 1) + orjson.dumps(ITEMS[0]) + b"\n", 9)
    assert len(bomb) < 100_000
    for query, content_type in (
        ("?format=jsonl", "application/gzip"),
        ("", "application/x-ndjson"),
    ):
        response = await feed_api.post(
            f"/v1/validate/feed{query}",
            data=bomb,
            headers={"Content-Type": content_type, **provider.bearer},
        )
        preview = await response.json()
        assert response.status == 200, (content_type, preview)
        assert preview["status"] == "failed" and preview["reason_code"] == "size_limit", preview
        # the words a run of the same body records
        assert f"the decoded feed is larger than the cap of {cap} bytes" in preview["reason"]


async def test_a_body_sent_gzip_inside_gzip_fails_as_a_run_of_it_would(
    feed_api: Client, store: Database
) -> None:
    """A run refuses a body that is gzip again once decoded; a preview by body did otherwise: as
    application/gzip it read the inner gzip as garbled items, and under Content-Encoding: gzip
    it took off both layers and answered `ok`."""
    provider = await create_provider(store)
    once = gzip.compress(b"".join(orjson.dumps(item) + b"\n" for item in ITEMS))
    for query, headers in (
        ("?format=jsonl", {"Content-Type": "application/gzip"}),
        ("", {"Content-Type": "application/x-ndjson"}),  # known by its magic bytes
        ("", {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}),
    ):
        response = await feed_api.post(
            f"/v1/validate/feed{query}",
            data=gzip.compress(once),
            headers={**headers, **provider.bearer},
        )
        preview = await response.json()
        assert response.status == 200, (headers, preview)
        assert preview["status"] == "failed" and preview["reason_code"] == "parse_error", preview
        assert "gzip inside gzip" in preview["reason"], (headers, preview)
    # Compressed once, under Content-Encoding, it is read as it is; under x-gzip, which the HTTP
    # layer does not decode, it is refused as that coding, not as "gzip inside gzip" (trial).
    for coding, status in (("gzip", 200), ("x-gzip", 400)):
        response = await feed_api.post(
            "/v1/validate/feed",
            data=once,
            headers={
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": coding,
                **provider.bearer,
            },
        )
        answer = await response.json()
        assert response.status == status, answer
        if status == 200:
            assert answer["counts"]["seen"] == len(ITEMS), answer
        else:
            assert "Content-Encoding" in answer["detail"], answer


async def test_a_gzip_body_at_a_url_without_gz_is_known_by_its_magic_bytes(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    """No `.gz`, no Content-Encoding: the preview decompresses the fetched body as a run does,
    and a corrupt one is named as gzip, not read as a garbled CSV header."""
    provider = await create_provider(store)
    url = feeds_host.serve("/static/export-csv", body(gzip.compress(as_csv(ITEMS))))
    status, preview, _ = await call(
        feed_api, "POST", "/v1/validate/feed", provider, {"url": url, "format": "csv"}
    )
    assert status == 200 and preview["status"] == "ok", preview
    assert preview["counts"] == {"seen": 4, "invalid": 1}
    corrupt = feeds_host.serve("/static/broken-csv", body(gzip.compress(as_csv(ITEMS))[:-20]))
    status, preview, _ = await call(
        feed_api, "POST", "/v1/validate/feed", provider, {"url": corrupt, "format": "csv"}
    )
    assert status == 200 and preview["reason_code"] == "parse_error", preview
    assert "gzip" in preview["reason"], preview
    twice = feeds_host.serve("/static/twice-csv", body(gzip.compress(gzip.compress(as_csv(ITEMS)))))
    status, preview, _ = await call(
        feed_api, "POST", "/v1/validate/feed", provider, {"url": twice, "format": "csv"}
    )
    assert status == 200 and preview["reason_code"] == "parse_error", preview
    assert "gzip inside gzip" in preview["reason"], preview


async def test_a_refused_charset_names_the_bodys_format(feed_api: Client, store: Database) -> None:
    provider = await create_provider(store)
    for content_type, said in (
        ("text/csv; charset=iso-8859-1", "CSV must be UTF-8, not iso-8859-1"),
        ("application/x-ndjson; charset=latin1", "JSON Lines must be UTF-8, not latin1"),
        ("application/json; charset=utf-16", "JSON must be UTF-8, not utf-16"),
        ('application/json; charset="latin1"', "JSON must be UTF-8, not latin1"),
        # aiohttp reads only the first charset, and none when it is empty: both passed (trial)
        ("application/json; charset=", "JSON must be UTF-8, not an empty charset"),
        (
            "application/json; charset=utf-8; charset=latin1",
            "the Content-Type names a charset more than once: name it once (utf-8) or not at all",
        ),
    ):
        response = await feed_api.post(
            "/v1/validate/feed",
            data=as_csv(ITEMS),
            headers={"Content-Type": content_type, **provider.bearer},
        )
        refused = await problem(response, 415)
        assert refused["detail"] == said, refused


async def test_a_format_contradicting_the_content_type_is_a_400_naming_it(
    feed_api: Client, store: Database
) -> None:
    """`?format=` names an application/gzip body's format: beside a Content-Type that names
    another, it was obeyed, and a CSV body read as JSON Lines had every item invalid."""
    provider = await create_provider(store)
    for query, content, content_type in (
        ("?format=jsonl", as_csv(ITEMS), "text/csv"),
        ("?format=json", gzip.compress(as_csv(ITEMS)), "text/csv"),
        ("?format=csv", orjson.dumps({"url": "http://127.0.0.1:9/feed.csv"}), "application/json"),
    ):
        response = await feed_api.post(
            f"/v1/validate/feed{query}",
            data=content,
            headers={"Content-Type": content_type, **provider.bearer},
        )
        refused = await problem(response, 400)
        assert refused["type"].endswith("/bad-query"), refused
        [error] = refused["errors"]
        assert error["parameter"] == "format" and content_type in error["message"], refused
        assert refused["detail"].startswith("format: "), refused


async def test_a_preview_answers_a_failing_file_as_failed_and_holds_unidentified_items(
    feed_api: Client, store: Database
) -> None:
    """More items than `total_assets` fails the file: the answer was `failed` beside a preview
    of what its items would do. A line whose id cannot be read, in a snapshot that would delete,
    holds the run (`unidentified_items`), as the poller does."""
    provider = await create_provider(store)
    await store_asset(
        store, provider.provider_id, "gone", updated_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    response = await feed_api.post(
        "/v1/validate/feed",
        data=feed_body(ITEMS[:2], timestamp=snapshot_at(), total=1),
        headers={**JSON, **provider.bearer},
    )
    failed = await response.json()
    assert response.status == 200 and failed == {
        "valid": False,
        "status": "failed",
        "reason_code": "parse_error",
        "reason": "the feed holds 2 items, more than its total_assets 1",
    }, failed
    lines = b"\n".join([orjson.dumps(ITEMS[0]), b"{{garbled"]) + b"\n"
    response = await feed_api.post(
        "/v1/validate/feed",
        data=lines,
        headers={"Content-Type": "application/x-ndjson", **provider.bearer},
    )
    held = await response.json()
    assert (held["status"], held["reason_code"]) == ("held", "unidentified_items"), held
    assert held["preview"]["delete"] == 1
    # An id that breaks the id rule ("gone " with a blank) is no stored asset's either.
    lines = b"\n".join([orjson.dumps(ITEMS[0]), orjson.dumps({**ITEMS[1], "id": "gone "})])
    response = await feed_api.post(
        "/v1/validate/feed",
        data=lines + b"\n",
        headers={"Content-Type": "application/x-ndjson", **provider.bearer},
    )
    held = await response.json()
    assert (held["status"], held["reason_code"]) == ("held", "unidentified_items"), held


async def test_validate_feed_by_url_reports_holds_and_failures(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    provider = await create_provider(store)
    long_ago = utc_now() - timedelta(days=30)
    for n in range(8):
        await store_asset(store, provider.provider_id, f"old-{n}", updated_at=long_ago)
    content = feed_body(ITEMS, timestamp=snapshot_at())
    url = feeds_host.serve("/preview.json.gz", body(gzip.compress(content)))
    status, preview, _ = await call(feed_api, "POST", "/v1/validate/feed", provider, {"url": url})
    assert status == 200, preview
    assert preview["status"] == "held" and preview["reason_code"] == "deletion_threshold"
    assert preview["preview"] == {"create": 3, "update": 0, "unchanged": 0, "delete": 8}
    # A registered feed's own threshold applies with ?feed_id=.
    await put_feed(
        feed_api, provider, "lenient", url=url, deletion_threshold={"percent": 100, "min_count": 8}
    )
    status, lenient, _ = await call(
        feed_api, "POST", "/v1/validate/feed?feed_id=lenient", provider, {"url": url}
    )
    assert status == 200 and lenient["status"] == "ok", lenient
    # ...and the same body sent inline previews alike.
    response = await feed_api.post(
        "/v1/validate/feed?feed_id=lenient", data=content, headers={**JSON, **provider.bearer}
    )
    assert (await response.json())["preview"] == lenient["preview"]

    missing = feeds_host.serve("/missing.json", body(b"gone", status=404))
    status, failed, _ = await call(
        feed_api, "POST", "/v1/validate/feed", provider, {"url": missing}
    )
    assert status == 200 and failed["status"] == "failed"
    assert failed["reason_code"] == "http_status" and failed["valid"] is False
    status, refused, _ = await call(
        feed_api, "POST", "/v1/validate/feed", provider, {"url": "http://10.1.2.3/feed.json"}
    )
    assert status == 422 and refused["errors"][0]["pointer"] == "/url"
    status, unknown, _ = await call(
        feed_api, "POST", "/v1/validate/feed?feed_id=nope", provider, {"url": url}
    )
    assert status == 404 and unknown["type"].endswith("/not-found")
    # an empty one is a 400, as every empty parameter (it was a 404: security trial)
    status, empty_id, _ = await call(
        feed_api, "POST", "/v1/validate/feed?feed_id=", provider, {"url": url}
    )
    assert status == 400 and empty_id["errors"][0]["parameter"] == "feed_id", empty_id
    response = await feed_api.post(
        "/v1/validate/feed", data=b"{broken", headers={**JSON, **provider.bearer}
    )
    broken = await response.json()
    assert response.status == 200 and broken["reason_code"] == "parse_error"
    # An empty body is a feed file too (docs/api.md: a file that fails is a 200 report)
    response = await feed_api.post(
        "/v1/validate/feed", data=b"", headers={**JSON, **provider.bearer}
    )
    empty = await response.json()
    assert response.status == 200 and empty["reason_code"] == "parse_error"
    response = await feed_api.post(
        "/v1/validate/feed?format=xml", data=b"[]", headers={**JSON, **provider.bearer}
    )
    assert (await problem(response, 400))["errors"] == [
        {"parameter": "format", "message": "must be one of json, jsonl, csv"}
    ]
    assert (
        await store.fetchval(
            "SELECT count(*) FROM feed_runs WHERE provider_id = $1", provider.provider_id
        )
        == 0
    )


async def test_without_an_allow_list_loopback_is_refused_at_put_and_at_fetch(
    ingest: Client, store: Database, feeds_host: FeedServer
) -> None:
    """The module's plain ingest-api allows no private network, as a deployment by default."""
    provider = await create_provider(store)
    url = feeds_host.serve("/local.json", body(feed_body([asset("x")], timestamp=snapshot_at())))
    status, refused, _ = await call(ingest, "PUT", "/v1/feeds/local", provider, {"url": url})
    assert status == 422 and refused["errors"][0]["pointer"] == "/url", refused
    # A host name is checked per resolved address when fetched: the preview fails as a run would.
    by_name = url.replace("127.0.0.1", "localhost")
    status, preview, _ = await call(ingest, "POST", "/v1/validate/feed", provider, {"url": by_name})
    assert status == 200 and preview["reason_code"] == "address_refused", preview
    assert feeds_host.hits["/local.json"] == 0


async def test_a_loopback_literal_in_unicode_digits_is_refused_at_put_and_validate(
    ingest: Client, store: Database, feeds_host: FeedServer
) -> None:
    """A host the HTTP client maps to an IP literal (full-width or circled digits, `。`) is
    refused where its ASCII form is: the fetch would connect to that address (hostile trial)."""
    provider = await create_provider(store)
    url = feeds_host.serve("/wide.json", body(feed_body([asset("x")], timestamp=snapshot_at())))
    port = url.split(":")[2].split("/")[0]
    for n, host in enumerate(("１２７.０.０.１", "①②⑦.⓪.⓪.①", "127。0。0。1", "１２７.１")):
        wide = f"http://{host}:{port}/wide.json"
        status, refused, _ = await call(
            ingest, "PUT", f"/v1/feeds/wide-{n}", provider, {"url": wide}
        )
        assert status == 422 and refused["errors"] == [
            {
                "pointer": "/url",
                "message": "address 127.0.0.1 is not a public address and not allow-listed",
            }
        ], (host, refused)
        status, refused, _ = await call(
            ingest, "POST", "/v1/validate/feed", provider, {"url": wide}
        )
        assert status == 422 and refused["errors"][0]["pointer"] == "/url", (host, refused)
    assert feeds_host.hits["/wide.json"] == 0
    status, listed, _ = await call(ingest, "GET", "/v1/feeds", provider)
    assert status == 200 and listed["items"] == [], listed


async def test_a_site_local_ipv6_feed_url_is_refused_at_put(
    ingest: Client, store: Database
) -> None:
    """fec0::/10 (site-local, deprecated by RFC 3879) is no public unicast address: the address
    policy refuses it as it refuses fc00::/7 (security review)."""
    provider = await create_provider(store)
    for n, host in enumerate(("[fec0::1]", "[fec0:0:0:ffff::1]", "[::ffff:10.0.0.1]")):
        status, refused, _ = await call(
            ingest, "PUT", f"/v1/feeds/site-local-{n}", provider, {"url": f"http://{host}/f.json"}
        )
        assert status == 422 and refused["errors"][0]["pointer"] == "/url", (host, refused)


async def test_one_provider_cannot_take_every_preview_slot(
    feed_api: Client, store: Database, feeds_host: FeedServer
) -> None:
    """Two previews run at once per process (the default); a provider previewing slow feeds in
    a loop held both, and every other provider got a 503. Now a provider holds at most all but
    one: its next preview is a 429 at once, while another provider's runs; with every slot
    taken, a third provider waits, then gets the 503."""
    slow = feeds_host.serve("/slow.json", body(orjson.dumps(ITEMS), delay=8))
    first, second, third = [await create_provider(store) for _ in range(3)]

    def preview_slow(who: Provider) -> asyncio.Task[tuple[int, Any, dict[str, str]]]:
        return asyncio.create_task(
            call(feed_api, "POST", "/v1/validate/feed", who, {"url": slow, "format": "json"})
        )

    async def fetches() -> int:
        return feeds_host.hits["/slow.json"]

    held = preview_slow(first)
    await eventually(fetches, lambda n: n == 1)
    status, refused, headers = await call(feed_api, "POST", "/v1/validate/feed", first, ITEMS)
    assert status == 429 and refused["type"].endswith("/too-many-requests"), refused
    assert headers["Retry-After"] == "5"
    status, preview, _ = await call(feed_api, "POST", "/v1/validate/feed", second, ITEMS)
    assert status == 200, preview
    also_held = preview_slow(second)
    await eventually(fetches, lambda n: n == 2)
    status, busy, headers = await call(feed_api, "POST", "/v1/validate/feed", third, ITEMS)
    assert status == 503 and "too many feed previews" in busy["detail"], busy
    for task in (held, also_held):
        status, preview, _ = await task
        assert status == 200 and preview["status"] == "ok", preview
    # the slots are free again, for the provider that held one too
    status, preview, _ = await call(feed_api, "POST", "/v1/validate/feed", first, ITEMS)
    assert status == 200, preview


async def test_a_feed_stored_under_an_id_no_longer_taken_is_still_replaced_by_it(
    feed_api: Client, store: Database
) -> None:
    """An earlier release registered `-legacy` (its URL ending in a space, every run a 404);
    after the upgrade its provider could not correct it: the PUT refused the id (upgrade
    trial). A new feed still cannot take such an id."""
    provider = await create_provider(store)
    document = {"url": "https://feeds.example.com/a.json"}
    status, _, _ = await call(feed_api, "PUT", "/v1/feeds/legacy", provider, document)
    assert status in (200, 201)
    await store.execute("UPDATE feed_sources SET feed_id = '-legacy' WHERE feed_id = 'legacy'")
    fixed = {"url": "https://feeds.example.com/b.json"}
    status, answer, _ = await call(feed_api, "PUT", "/v1/feeds/-legacy", provider, fixed)
    assert status == 200, answer
    assert answer["url"] == fixed["url"]
    status, answer, _ = await call(feed_api, "PUT", "/v1/feeds/-new", provider, fixed)
    assert status == 422, answer
    assert [e["pointer"] for e in answer["errors"]] == ["/feed_id"]
