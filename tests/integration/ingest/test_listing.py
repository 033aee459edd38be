"""`GET /v1/assets`: the provider's own assets in id order, filtered, page by page with an opaque
cursor whose boundary never skips nor repeats an asset while writes go on."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rwasync.platform.db import Database
from rwasync.schema.asset import normalized_document, parse_asset
from rwasync.store import catalog
from tests.integration.ingest.conftest import Provider, create_provider
from tests.integration.ingest.helpers import Client, house, problem, store_asset
from tests.integration.ingest.test_catalog_api import create_reader
from tests.support.events import large_asset_doc

pytestmark = pytest.mark.integration

T0 = datetime(2025, 5, 1, tzinfo=UTC)


async def stored(
    store: Database,
    provider: Provider,
    asset_id: str,
    *,
    status: str = "active",
    days: int = 0,
    deleted: bool = False,
) -> None:
    document = normalized_document(parse_asset(house(asset_id, status=status)))
    await store_asset(
        store,
        provider.provider_id,
        asset_id,
        document=document,
        updated_at=T0 + timedelta(days=days),
        deleted=deleted,
    )


async def page(client: Client, provider: Provider, query: str) -> dict[str, Any]:
    response = await client.get(f"/v1/assets?{query}", headers=provider.bearer)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_filters_and_meta(ingest: Client, provider: Provider, store: Database) -> None:
    other = await create_provider(store)
    await stored(store, provider, "l-1", days=1)
    await stored(store, provider, "l-2", status="sold", days=2)
    await stored(store, provider, "l-3", days=3, deleted=True)
    await stored(store, other, "l-4")

    body = await page(ingest, provider, "")
    assert [item["id"] for item in body["items"]] == ["l-1", "l-2"]
    assert body["next_cursor"] is None
    assert body["items"][0]["_meta"]["deleted"] is False
    assert body["items"][0]["status"] == "active"

    assert [i["id"] for i in (await page(ingest, provider, "status=sold"))["items"]] == ["l-2"]
    since = (T0 + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert [i["id"] for i in (await page(ingest, provider, f"updated_since={since}"))["items"]] == [
        "l-2"
    ]
    body = await page(ingest, provider, "include_deleted=true")
    assert [(i["id"], i["_meta"]["deleted"]) for i in body["items"]] == [
        ("l-1", False),
        ("l-2", False),
        ("l-3", True),
    ]


async def test_pages_neither_skip_nor_repeat_while_writes_go_on(
    ingest: Client, provider: Provider, store: Database
) -> None:
    names = [f"k-{n:03d}" for n in range(0, 120, 2)]
    for name in names:
        await stored(store, provider, name)
    seen: list[str] = []
    cursor = None
    rng = random.Random(7)
    inserted: list[str] = []
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        body = await page(ingest, provider, f"limit=7{suffix}")
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Writes between pages: new assets on both sides of the boundary, and updates.
        for _ in range(2):
            name = f"k-{rng.randrange(1, 120, 2):03d}"
            if name not in inserted:
                inserted.append(name)
                await stored(store, provider, name)
        await store.execute(
            "UPDATE assets SET updated_at = updated_at + interval '1 day' WHERE asset_id = $1",
            names[rng.randrange(len(names))],
        )
    assert len(seen) == len(set(seen)), "an asset was listed twice"
    assert set(names) <= set(seen), "an asset present throughout was skipped"
    assert seen == sorted(seen)


async def test_bad_queries_are_400(ingest: Client, provider: Provider) -> None:
    for query in (
        "limit=0",
        "limit=501",
        "limit=x",
        "limit=abc",
        "limit=²",
        "status=gone",
        "updated_since=yesterday",
        "include_deleted=maybe",
        "include_deleted=",
        "cursor=!!!",
        "cursor=Zm9v",
    ):
        response = await ingest.get(f"/v1/assets?{query}", headers=provider.basic)
        body = await problem(response, 400)
        # pricing's shape: the detail starts with the parameter, `errors` names it
        parameter = query.split("=")[0]
        assert body["type"].endswith("/bad-query")
        assert body["detail"].startswith(f"{parameter}: "), body
        assert body["errors"] == [
            {"parameter": parameter, "message": body["detail"].removeprefix(f"{parameter}: ")}
        ]
    # a timestamp says what is wrong with it: out of range is not malformed
    for value, said in (
        ("0001-01-01T00:00:00Z", "must be from the year 1000 to 9998"),
        ("2026-01-01T00:00:00", "must include a UTC offset"),
        ("yesterday", "must be an RFC 3339 timestamp with an offset"),
        # an offset's '+' sent unescaped arrives as a space: the message says so
        ("2026-01-01T00:00:00+02:00", "send a '+' offset as %2B in a URL"),
    ):
        response = await ingest.get(f"/v1/assets?updated_since={value}", headers=provider.basic)
        assert said in (await problem(response, 400))["detail"], value
    plus = "2026-01-01T00:00:00%2B02:00"
    response = await ingest.get(f"/v1/assets?updated_since={plus}", headers=provider.basic)
    assert response.status == 200
    # an empty flag is refused, not read as false; the flag's case does not matter. An empty
    # timestamp says so in the same words (it said "must be an RFC 3339 timestamp": a trial)
    for path, parameter in (
        ("/v1/assets/a-1?include_deleted=", "include_deleted"),
        ("/v1/assets?updated_since=", "updated_since"),
    ):
        response = await ingest.get(path, headers=provider.basic)
        assert (await problem(response, 400))["errors"] == [
            {
                "parameter": parameter,
                "message": "must not be empty: leave the parameter out instead",
            }
        ]
    response = await ingest.get("/v1/assets?include_deleted=TRUE", headers=provider.basic)
    assert response.status == 200
    # the message lists every value the flag takes (docs/api.md: true|false|1|0)
    response = await ingest.get("/v1/assets/a-1?include_deleted=yes", headers=provider.basic)
    assert (await problem(response, 400))["errors"] == [
        {"parameter": "include_deleted", "message": "must be true, false, 1 or 0"}
    ]
    await problem(await ingest.get("/v1/assets"), 401)


async def _store_large_documents(store: Database, provider: Provider, count: int) -> None:
    """`count` assets of ~0.8 MB each (each within the 1 MiB PUT body limit), stored directly."""
    document = large_asset_doc("x")
    assert len(json.dumps(document)) < 1024**2
    await store.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at)
           SELECT $1, i, now(), false, now(), gen_random_uuid(), 'push',
                  jsonb_set($2::text::jsonb, '{id}', to_jsonb(i)), '\\x00', 'active', now()
           FROM generate_series(1, $3) n, LATERAL (SELECT 'big-' || lpad(n::text, 4, '0')) a(i)""",
        provider.provider_id,
        json.dumps(document),
        count,
    )


async def test_a_page_of_large_documents_ends_early_and_paging_still_reads_every_asset(
    ingest: Client, provider: Provider, store: Database
) -> None:
    """A page was sized by count only while a document may be near 1 MiB: one page of 250 such
    documents (a 200 MB answer) grew ingest-api by ~800 MB, past the 512Mi the k8s manifest
    gives a pod (review). A page now ends once its documents reach about 8 MiB
    (`catalog.PAGE_DOCUMENT_BYTES`); `next_cursor` goes on from there. The same for the
    catalogue read."""
    await _store_large_documents(store, provider, 40)
    budget = catalog.PAGE_DOCUMENT_BYTES
    reader = await create_reader(store)
    for path, headers in (
        ("/v1/assets?limit=500", provider.bearer),
        (f"/v1/catalog/assets?provider_id={provider.provider_id}&limit=500", reader),
    ):
        seen: list[str] = []
        pages = 0
        cursor = ""
        for _ in range(40):
            response = await ingest.get(path + cursor, headers=headers)
            body = await response.read()
            assert response.status == 200, body[:300]
            assert len(body) <= budget + 1024**2, (path, len(body))
            page = json.loads(body)
            seen += [item["id"] for item in page["items"]]
            pages += 1
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert seen == [f"big-{n:04d}" for n in range(1, 41)], path
        assert pages >= 4, (path, pages)


async def test_an_empty_or_forged_cursor_is_a_400_naming_it(
    ingest: Client, provider: Provider, store: Database
) -> None:
    """`cursor=` read as no cursor restarted the listing from its first page (a client loop that
    sent an empty cursor at the end read page one again), and a cursor carrying an id no asset can
    have was taken as a position; both are a 400 naming `cursor`, as in the portal's catalogue.
    A provider's listing, the portal's catalogue, the feeds and pricing's history agree."""
    reader = await create_reader(store)

    def forged(prefix: str, text: str) -> str:
        return prefix + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for path, headers in (
        ("/v1/assets?cursor=", provider.bearer),
        ("/v1/feeds?cursor=", provider.bearer),
        ("/v1/catalog/assets?cursor=", reader),
        (f"/v1/assets?cursor={forged('', 'a1:a b')}", provider.bearer),
        (f"/v1/assets?cursor={forged('', 'a1:')}", provider.bearer),
        (f"/v1/catalog/assets?cursor={forged('a1.', 'p x' + chr(10) + 'a-1')}", reader),
        (f"/v1/catalog/assets?cursor={forged('a1.', 'p-1' + chr(10) + 'a/1')}", reader),
    ):
        body = await problem(await ingest.get(path, headers=headers), 400)
        assert [error["parameter"] for error in body["errors"]] == ["cursor"], (path, body)
    # a cursor of ours still reads on
    await stored(store, provider, "c-1")
    await stored(store, provider, "c-2")
    first = await page(ingest, provider, "limit=1")
    rest = await page(ingest, provider, f"limit=1&cursor={first['next_cursor']}")
    assert [item["id"] for item in rest["items"]] == ["c-2"]
