"""A provider's feed over the provider API and a portal's reads, through the four services as
real processes: the feed registered, previewed, run and watched over HTTP until its assets are
applied in Postgres; a held deletion approved and a held empty feed rejected over HTTP; the
catalogue and its change feed read with a reader token while a provider credential is refused."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_feed_formats import FileHost, csv_gz
from tests.e2e.test_flows import bearer, get_asset, now
from tests.support.events import asset_doc
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

FINISHED = {"ok", "not_modified", "held", "failed", "rejected"}


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[FileHost]:
    host = FileHost(tmp_path)
    await host.start()
    yield host
    assert host.runner is not None
    await host.runner.cleanup()


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def run_and_watch(
    http: aiohttp.ClientSession, ingest: str, provider: dict[str, str], feed_id: str
) -> dict[str, Any]:
    status, requested, headers = await call(
        http, "POST", f"{ingest}/v1/feeds/{feed_id}/runs", bearer(provider)
    )
    assert status == 202, requested
    return await watch(http, ingest + headers["Location"], provider)


async def watch(
    http: aiohttp.ClientSession, url: str, provider: dict[str, str], until: set[str] = FINISHED
) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        status, run, _ = await call(http, "GET", url, bearer(provider))
        assert status == 200, run
        return dict(run)

    return await eventually(read, lambda run: run["status"] in until, timeout=60, what=url)


async def test_a_feed_registered_and_run_over_the_api_reaches_the_catalogue(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    reader: dict[str, str],
    files: FileHost,
) -> None:
    ingest = system.url("ingest-api")
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"api-{i}", t0) for i in range(8)]
    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz(assets))
    url = files.url("catalogue.csv.gz")

    # The preview first: what a run would do, nothing written.
    status, preview, _ = await call(
        http, "POST", f"{ingest}/v1/validate/feed", bearer(provider), {"url": url, "format": "csv"}
    )
    assert status == 200 and preview["preview"]["create"] == 8, preview
    status, feed, _ = await call(
        http,
        "PUT",
        f"{ingest}/v1/feeds/catalogue",
        bearer(provider),
        {"url": url, "format": "csv", "schedule": "0 3 * * *"},
    )
    assert status == 200 and feed["schedule"] == "0 3 * * *", feed
    assert (await get_asset(http, system, provider, "api-0"))[0] == 404

    run = await run_and_watch(http, ingest, provider, "catalogue")
    assert run["status"] == "ok" and run["counts"]["created"] == 8, run

    async def live() -> int:
        statuses = [(await get_asset(http, system, provider, a["id"]))[0] for a in assets]
        return statuses.count(200)

    await eventually(live, lambda n: n == 8, what="feed applied")

    # The portal sees the provider's assets with a reader token, and their changes.
    owner = provider["provider_id"]
    status, page, _ = await call(
        http, "GET", f"{ingest}/v1/catalog/assets?provider_id={owner}", bearer(reader)
    )
    assert status == 200 and [i["id"] for i in page["items"]] == sorted(a["id"] for a in assets)
    assert {i["_meta"]["provider_id"] for i in page["items"]} == {owner}
    status, refused, _ = await call(http, "GET", f"{ingest}/v1/catalog/assets", bearer(provider))
    assert status == 401, refused

    async def changes_of(since: str | None) -> tuple[list[dict[str, Any]], str]:
        query = f"?since={since}&limit=500" if since else "?limit=500"
        status, changes, _ = await call(
            http, "GET", f"{ingest}/v1/catalog/changes{query}", bearer(reader)
        )
        assert status == 200, changes
        return [c for c in changes["items"] if c["provider_id"] == owner], changes["next_cursor"]

    mine: list[dict[str, Any]] = []
    cursor: str | None = None

    async def follow() -> int:
        nonlocal cursor
        found, cursor = await changes_of(cursor)
        mine.extend(found)
        return len(mine)

    await eventually(follow, lambda n: n >= 8, what="changes of the feed's assets")
    assert sorted(c["asset_id"] for c in mine) == sorted(a["id"] for a in assets)

    # Six of eight missing: held; approved over the API, the deletions reach Postgres and the
    # change feed resumes with exactly them.
    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz(assets[:2]))
    held = await run_and_watch(http, ingest, provider, "catalogue")
    assert held["status"] == "held" and held["reason_code"] == "deletion_threshold", held
    assert held["counts"]["held_deletions"] == 6
    run_url = f"{ingest}/v1/feeds/catalogue/runs/{held['run_id']}"
    status, approved, _ = await call(http, "POST", f"{run_url}/approve", bearer(provider))
    assert status == 202, approved
    done = await watch(http, run_url, provider, {"ok", "failed"})
    assert done["status"] == "ok" and done["counts"]["deleted"] == 6, done
    await eventually(live, lambda n: n == 2, what="approved deletions applied")
    deletions: list[dict[str, Any]] = []

    async def follow_deletions() -> int:
        nonlocal cursor
        found, cursor = await changes_of(cursor)
        deletions.extend(found)
        return len(deletions)

    await eventually(follow_deletions, lambda n: n >= 6, what="deletions in the change feed")
    assert sorted((c["type"], c["asset_id"]) for c in deletions) == [
        ("asset.deleted", a["id"]) for a in assets[2:]
    ]


async def test_a_held_empty_feed_rejected_over_the_api_changes_nothing(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], files: FileHost
) -> None:
    ingest = system.url("ingest-api")
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"jl-{i}", t0) for i in range(3)]
    (files.folder / "feed.jsonl.gz").write_bytes(
        gzip.compress(b"".join(json.dumps(a).encode() + b"\n" for a in assets))
    )
    status, _, _ = await call(
        http,
        "PUT",
        f"{ingest}/v1/feeds/lines",
        bearer(provider),
        {"url": files.url("feed.jsonl.gz"), "format": "jsonl"},
    )
    assert status == 200
    assert (await run_and_watch(http, ingest, provider, "lines"))["status"] == "ok"
    await eventually(
        lambda: get_asset(http, system, provider, "jl-2"), lambda r: r[0] == 200, what="applied"
    )
    (files.folder / "feed.jsonl.gz").write_bytes(gzip.compress(b"\n"))
    held = await run_and_watch(http, ingest, provider, "lines")
    assert held["status"] == "held" and held["reason_code"] == "empty_feed", held
    run_url = f"{ingest}/v1/feeds/lines/runs/{held['run_id']}"
    status, rejected, _ = await call(http, "POST", f"{run_url}/reject", bearer(provider))
    assert status == 200 and rejected["status"] == "rejected", rejected
    status, _, _ = await call(http, "POST", f"{run_url}/approve", bearer(provider))
    assert status == 409
    for asset in assets:
        assert (await get_asset(http, system, provider, asset["id"]))[0] == 200
