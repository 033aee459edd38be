"""The portal's catalogue reads through the real ingest-api, over what the reconciler's applier
wrote into a real Postgres: the catalogue paged across providers, the change feed followed and
resumed while concurrent writers commit (no entry skipped or repeated), an expired cursor 410,
and only reader tokens let in."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from typing import Any

import pytest

from rwasync.platform.db import Database
from rwasync.reconciler.apply import AssetApplier
from rwasync.store.tenants import digest
from tests.integration.ingest.conftest import Provider, create_provider
from tests.integration.ingest.helpers import Client, create_reader, problem
from tests.support.events import at, deleted, upserted
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def read(client: Client, path: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(path, headers=headers)
    text = await response.text()
    assert response.status == 200, text
    body: dict[str, Any] = await response.json()
    return body


async def whole_catalogue(
    client: Client, reader: dict[str, str], query: str = "", limit: int = 3
) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    cursor = ""
    for _ in range(1000):
        page = await read(client, f"/v1/catalog/assets?limit={limit}{query}{cursor}", reader)
        keys += [(item["_meta"]["provider_id"], item["id"]) for item in page["items"]]
        if page["next_cursor"] is None:
            return keys
        cursor = f"&cursor={page['next_cursor']}"
    raise AssertionError("the catalogue never ended")


async def test_the_catalogue_pages_across_providers_each_live_asset_once(
    ingest: Client, store: Database
) -> None:
    reader = await create_reader(store)
    providers = [await create_provider(store) for _ in range(2)]
    disabled = await create_provider(store)
    applier = AssetApplier(store)
    for provider in [*providers, disabled]:
        await applier.apply(
            [upserted(provider.provider_id, f"h-{n:02d}", at(n)) for n in range(7)]
            + [upserted(provider.provider_id, "sold-1", at(1), status="sold")]
        )
        await applier.apply([deleted(provider.provider_id, "h-03", at(30))])
    await store.execute(
        "UPDATE providers SET disabled = true WHERE provider_id = $1", disabled.provider_id
    )
    ours = {p.provider_id for p in providers}
    keys = [
        k for k in await whole_catalogue(ingest, reader) if k[0] in ours | {disabled.provider_id}
    ]
    expected = sorted(
        (p, a) for p in ours for a in [f"h-{n:02d}" for n in range(7) if n != 3] + ["sold-1"]
    )
    assert keys == expected  # ordered, once each, no deleted asset, no disabled provider
    first = providers[0].provider_id
    only = await whole_catalogue(ingest, reader, f"&provider_id={first}&status=sold")
    assert only == [(first, "sold-1")]
    page = await read(ingest, f"/v1/catalog/assets?provider_id={first}&limit=1", reader)
    item = page["items"][0]
    assert set(item["_meta"]) == {"provider_id", "updated_at", "content_hash", "applied_at"}
    assert (
        item["id"] == "h-00"
        and item["status"] == "active"
        and len(item["_meta"]["content_hash"]) == 64
    )
    recent = await whole_catalogue(
        ingest, reader, f"&provider_id={first}&updated_since=2026-01-01T12:05:00%2B00:00"
    )
    assert recent == [(first, "h-05"), (first, "h-06")]


async def follow(
    client: Client, reader: dict[str, str], since: str | None, until: int, limit: int = 7
) -> tuple[list[dict[str, Any]], str]:
    """Read the change feed from `since` until `until` entries came; returns them and the
    cursor to resume from."""
    items: list[dict[str, Any]] = []
    cursor = since

    async def more() -> int:
        nonlocal cursor
        query = f"?limit={limit}" + (f"&since={cursor}" if cursor else "")
        page = await read(client, f"/v1/catalog/changes{query}", reader)
        items.extend(page["items"])
        assert page["next_cursor"]
        cursor = page["next_cursor"]
        return len(items)

    await eventually(more, lambda n: n >= until, interval=0.02, timeout=30, what="entries")
    assert cursor is not None
    return items, cursor


async def test_the_change_feed_resumes_with_nothing_skipped_or_repeated_under_concurrent_writers(
    ingest: Client, store: Database
) -> None:
    reader = await create_reader(store)
    # Start after whatever other tests wrote: follow to the end first.
    start = (await read(ingest, "/v1/catalog/changes?limit=500", reader))["next_cursor"]
    while True:
        page = await read(ingest, f"/v1/catalog/changes?limit=500&since={start}", reader)
        if not page["items"]:
            assert page["next_cursor"] == start  # nothing new: the cursor asked for
            break
        start = page["next_cursor"]
    providers: list[Provider] = [await create_provider(store) for _ in range(4)]
    applier = AssetApplier(store)
    events = [
        upserted(p.provider_id, f"a-{n}", at(n + random.random()))
        for p in providers
        for n in range(30)
    ]
    random.shuffle(events)

    async def writer(share: list[Any]) -> None:
        for offset in range(0, len(share), 5):
            await applier.apply(share[offset : offset + 5])
            await asyncio.sleep(random.random() / 100)

    # Four writers committing concurrently while the reader follows and resumes.
    writing = asyncio.gather(*(writer(events[w::4]) for w in range(4)))
    first, cursor = await follow(ingest, reader, start, 40)
    await writing
    rest, cursor = await follow(ingest, reader, cursor, len(events) - len(first))
    seen = [item["event_id"] for item in first + rest]
    assert len(seen) == len(set(seen)) == len(events)
    assert set(seen) == {str(e.event_id) for e in events}
    # Resuming from the end gives nothing new, and a repeated read of a cursor the same page.
    again = await read(ingest, f"/v1/catalog/changes?since={cursor}", reader)
    assert again == {"items": [], "next_cursor": cursor}
    entry = rest[-1]
    assert set(entry) == {
        "cursor", "event_id", "type", "provider_id", "asset_id", "updated_at", "deleted",
        "content_hash", "applied_at",
    }  # fmt: skip
    assert entry["type"] == "asset.upserted" and entry["deleted"] is False
    # A deletion is an entry too; a stale upsert is none.
    target = providers[0].provider_id
    await applier.apply([deleted(target, "a-0", at(100))])
    await applier.apply([upserted(target, "a-0", at(50))])
    tail, _ = await follow(ingest, reader, cursor, 1)
    await asyncio.sleep(0.3)
    tail += (await read(ingest, f"/v1/catalog/changes?since={tail[-1]['cursor']}", reader))["items"]
    assert [(t["type"], t["asset_id"], t["content_hash"]) for t in tail] == [
        ("asset.deleted", "a-0", None)
    ]


async def test_an_expired_cursor_is_410(ingest: Client, store: Database) -> None:
    reader = await create_reader(store)
    provider = await create_provider(store)
    await AssetApplier(store).apply([upserted(provider.provider_id, "x", at(1))])
    items, _ = await follow(ingest, reader, None, 1, limit=500)
    old = items[0]["cursor"]
    horizon = await store.fetchrow("SELECT xid::text AS xid, change_id FROM asset_changes_horizon")
    # Retention moved past the cursor (as the relay's pruning does).
    await store.execute(
        "UPDATE asset_changes_horizon SET (xid, change_id) = "
        "(SELECT xid, change_id FROM asset_changes ORDER BY xid DESC, change_id DESC LIMIT 1)"
    )
    try:
        response = await ingest.get(f"/v1/catalog/changes?since={old}", headers=reader)
        gone = await problem(response, 410)
        assert gone["type"].endswith("/cursor-expired")
    finally:
        await store.execute(
            "UPDATE asset_changes_horizon SET (xid, change_id) = ($1::text::xid8, $2)",
            horizon["xid"],
            horizon["change_id"],
        )
    assert (await ingest.get(f"/v1/catalog/changes?since={old}", headers=reader)).status == 200


async def test_only_reader_tokens_read_the_catalogue_and_bad_parameters_are_named(
    ingest: Client, store: Database, provider: Provider
) -> None:
    reader = await create_reader(store)
    for path in ("/v1/catalog/assets", "/v1/catalog/changes"):
        for headers in (provider.basic, provider.bearer, {}, {"Authorization": "Bearer rwr_nope"}):
            refused = await problem(await ingest.get(path, headers=headers), 401)
            assert refused["type"].endswith("/unauthorized")
            # A provider's token says what kind of token reads (it said "invalid credentials").
            wrong_kind = headers == provider.bearer
            assert ("provider token (rwp_…) cannot read" in refused["detail"]) is wrong_kind
        assert (await ingest.get(path, headers=reader)).status == 200
    # ...and a reader token is no provider credential, which the refusal says.
    for path in ("/v1/assets", "/v1/feeds"):
        refused = await problem(await ingest.get(path, headers=reader), 401)
        assert "reader token (rwr_…) cannot call the provider API" in refused["detail"]
    revoked = await create_reader(store)
    await store.execute(
        "UPDATE readers SET revoked_at = now() WHERE token_digest = $1",
        digest(revoked["Authorization"].removeprefix("Bearer ")),
    )
    await problem(await ingest.get("/v1/catalog/assets", headers=revoked), 401)
    for query, parameter in [
        ("/v1/catalog/assets?limit=0", "limit"),
        ("/v1/catalog/assets?limit=501", "limit"),
        ("/v1/catalog/assets?status=for_sale", "status"),
        ("/v1/catalog/assets?cursor=nonsense", "cursor"),
        ("/v1/catalog/assets?updated_since=yesterday", "updated_since"),
        ("/v1/catalog/changes?since=c1.bm9wZQ", "since"),
        ("/v1/catalog/changes?since=" + uuid.uuid4().hex, "since"),
        # Numbers past the columns' types (these were a 500), and a digit that is not ASCII.
        ("/v1/catalog/changes?since=" + _change_cursor_of("540680.999999999999999999999"), "since"),
        ("/v1/catalog/changes?since=" + _change_cursor_of("18446744073709551616.1"), "since"),
        ("/v1/catalog/changes?since=" + _change_cursor_of("540680.\u0663"), "since"),
        # Within the types but ahead of every transaction: a follower would wait for ever.
        ("/v1/catalog/changes?since=" + _change_cursor_of(f"{2**63}.1"), "since"),
        ("/v1/catalog/changes?limit=x", "limit"),
        # Sent empty, each was read as left out: `since=` restarted the feed from its oldest
        # entry, `cursor=` the listing from its first page (found in a trial).
        ("/v1/catalog/changes?since=", "since"),
        ("/v1/catalog/assets?cursor=", "cursor"),
        ("/v1/catalog/assets?status=", "status"),
        ("/v1/catalog/assets?provider_id=", "provider_id"),
    ]:
        bad = await problem(await ingest.get(query, headers=reader), 400)
        assert bad["detail"].startswith(f"{parameter}: "), (query, bad)
        assert [error["parameter"] for error in bad["errors"]] == [parameter], (query, bad)


def _change_cursor_of(text: str) -> str:
    """A change cursor's form around `text` (what a client could forge)."""
    return "c1." + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_an_unknown_or_disabled_provider_is_a_404_as_in_pricing(
    ingest: Client, store: Database
) -> None:
    """`provider_id=nope` listed nothing with a 200, as if the provider had no assets, while
    pricing's reads answer an unknown provider `404 unknown provider …` (docs/api.md 3.2, 3.9)."""
    reader = await create_reader(store)
    empty = await create_provider(store)
    disabled = await create_provider(store, disabled=True)
    await AssetApplier(store).apply([upserted(disabled.provider_id, "x", at(1))])
    for provider_id in ("nope", disabled.provider_id):
        response = await ingest.get(f"/v1/catalog/assets?provider_id={provider_id}", headers=reader)
        body = await problem(response, 404)
        assert body["type"].endswith("/not-found")
        assert body["detail"] == f"unknown provider {provider_id!r}"
    # a provider without assets is known: an empty page
    page = await read(ingest, f"/v1/catalog/assets?provider_id={empty.provider_id}", reader)
    assert page == {"items": [], "next_cursor": None}
    # an id no provider can have is a bad parameter, as before
    bad = await problem(await ingest.get("/v1/catalog/assets?provider_id=%FF", headers=reader), 400)
    assert bad["errors"][0]["parameter"] == "provider_id"
