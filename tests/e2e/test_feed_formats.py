"""Feeds end to end through the real services as processes and the CLI: a gzip CSV feed and a
JSON Lines feed applied in Postgres, a held deletion approved and another rejected with the CLI,
and re-creation of an asset a feed run deleted."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.test_flows import bearer, get_asset, now, receipt
from tests.support.events import asset_doc
from tests.support.system import System, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


class FileHost:
    """A provider's web server on 127.0.0.1 serving whatever files the test writes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> None:
        async def serve(request: web.Request) -> web.StreamResponse:
            path = self.folder / request.match_info["name"]
            return web.Response(body=path.read_bytes())

        app = web.Application()
        app.router.add_get("/{name}", serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[FileHost]:
    host = FileHost(tmp_path)
    await host.start()
    yield host
    assert host.runner is not None
    await host.runner.cleanup()


def csv_gz(assets: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "updated_at", "status", "name", "price.amount", "price.currency"])
    for a in assets:
        writer.writerow([a["id"], a["updated_at"], a["status"], a["name"], "12.50", "USD"])
    return gzip.compress(out.getvalue().encode())


async def cli(system: System, *args: str) -> tuple[int, dict[str, Any]]:
    # In a thread: the feed host a run fetches from is served by this test's event loop.
    code, document = await asyncio.to_thread(system.cli, *args, check=False)
    return code, dict(document or {})


async def test_a_gzip_csv_feed_is_applied_and_a_held_deletion_is_approved_with_the_cli(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], files: FileHost
) -> None:
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"csv-{i}", t0) for i in range(8)]
    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz(assets))
    _, feed = system.cli(
        "feed", "add", provider["provider_id"], files.url("catalogue.csv.gz"),
        "--format", "csv", "--cron", "0 3 * * *", "--json",
    )  # fmt: skip
    assert feed["schedule"] == "0 3 * * *" and feed["format"] == "csv"
    code, run = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 0 and run["counts"]["created"] == 8, run

    async def live() -> int:
        statuses = [(await get_asset(http, system, provider, a["id"]))[0] for a in assets]
        return statuses.count(200)

    await eventually(live, lambda n: n == 8, what="CSV feed applied")

    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz(assets[:2]))  # 6 of 8 missing
    code, held = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 3 and held["reason_code"] == "deletion_threshold", held
    assert held["counts"]["held_deletions"] == 6
    await asyncio.sleep(1)
    assert await live() == 8
    code, approved = await cli(system, "feed", "approve", held["run_id"], "--json")
    assert code == 0 and approved["status"] == "ok" and approved["counts"]["deleted"] == 6
    await eventually(live, lambda n: n == 2, what="approved deletions applied")

    # A later snapshot listing a deleted asset again re-creates it.
    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz(assets[:3]))
    code, run = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 0 and run["counts"]["created"] == 1, run
    await eventually(live, lambda n: n == 3, what="deleted asset re-created")

    # Re-created, it is versioned at that run's snapshot time, later than the provider's own
    # updated_at values: the provider's next edit of it (newer than its document, older than
    # that snapshot) is still applied, not counted unchanged.
    edited = {**assets[2], "updated_at": (t0 + timedelta(minutes=1)).isoformat(), "name": "Edited"}
    (files.folder / "catalogue.csv.gz").write_bytes(csv_gz([*assets[:2], edited]))
    code, run = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 0 and run["counts"]["updated"] == 1, run
    await eventually(
        lambda: get_asset(http, system, provider, "csv-2"),
        lambda found: found[1].get("name") == "Edited",
        what="the re-created asset's edit applied",
    )


async def test_a_feed_change_older_than_a_patch_becomes_the_base_under_it(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], files: FileHost
) -> None:
    """Stored at U0, patched at U2 (sold): a feed item at U1, between them, with a new name is
    the asset's new base and the patch folds onto it again, as a push at U1 is. The run took it
    for stale by the patch's version, counted it unchanged and the name change was lost (found
    in a trial)."""
    u0 = now() - timedelta(minutes=30)
    stored = asset_doc("base-1", u0)
    lines = json.dumps(stored).encode() + b"\n"
    (files.folder / "base.jsonl").write_bytes(lines)
    _, feed = system.cli(
        "feed", "add", provider["provider_id"], files.url("base.jsonl"), "--format", "jsonl",
        "--json",
    )  # fmt: skip
    code, run = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 0 and run["counts"]["created"] == 1, run
    await eventually(
        lambda: get_asset(http, system, provider, "base-1"), lambda f: f[0] == 200, what="stored"
    )
    patch = {"updated_at": (u0 + timedelta(minutes=20)).isoformat(), "status": "sold"}
    async with http.patch(
        f"{system.url('ingest-api')}/v1/assets/base-1",
        data=json.dumps(patch),
        headers={**bearer(provider), "Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 202, await response.text()
        patched = await response.json()
    assert (await receipt(http, system, provider, patched["event_id"]))["status"] == "applied"

    renamed = {**stored, "updated_at": (u0 + timedelta(minutes=10)).isoformat(), "name": "Renamed"}
    (files.folder / "base.jsonl").write_bytes(json.dumps(renamed).encode() + b"\n")
    code, run = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 0 and run["counts"]["updated"] == 1, run
    _, found = await eventually(
        lambda: get_asset(http, system, provider, "base-1"),
        lambda f: f[1].get("name") == "Renamed",
        what="the feed's change under the patch",
    )
    assert found["status"] == "sold"  # the patch, folded onto the new base


async def test_a_feed_edit_keeping_its_price_never_replaces_a_fresher_pushed_price(
    system: System,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
    reader: dict[str, str],
    files: FileHost,
) -> None:
    """A feed states a price (as of its snapshot); a fresher price is pushed; later runs list the
    item unchanged (matched by its bytes), then with its description edited and the same price.
    The edit sent the old price again as of the new snapshot, over the pushed one (a trial)."""
    t0 = now() - timedelta(minutes=30)
    priced = asset_doc("fp-1", t0, price={"amount": "59.05", "currency": "USD"})
    other = asset_doc("fp-2", t0)

    async def run(*docs: dict[str, Any]) -> dict[str, Any]:
        (files.folder / "fp.jsonl").write_bytes(
            b"".join(json.dumps(d).encode() + b"\n" for d in docs)
        )
        code, ran = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
        assert code == 0, ran
        return ran

    async def latest() -> str:
        url = f"{system.url('pricing')}/v1/prices/{provider['provider_id']}/fp-1"
        async with http.get(url, headers=bearer(reader)) as response:
            return str((await response.json()).get("amount")) if response.status == 200 else ""

    (files.folder / "fp.jsonl").write_bytes(b"")
    _, feed = system.cli(
        "feed", "add", provider["provider_id"], files.url("fp.jsonl"), "--format", "jsonl",
        "--json",
    )  # fmt: skip
    assert (await run(priced))["counts"]["created"] == 1
    await eventually(latest, lambda amount: amount == "59.05", what="the feed's price")
    async with http.put(
        f"{system.url('ingest-api')}/v1/assets/fp-1/price",
        # To the microsecond: `now()`'s whole second can be before the run's snapshot time.
        json={"amount": "120", "currency": "USD", "as_of": datetime.now(UTC).isoformat()},
        headers=bearer(provider),
    ) as response:
        assert response.status == 202
        pushed = (await response.json())["event_id"]
    assert (await receipt(http, system, provider, pushed))["latest"] is True
    # fp-1's bytes unchanged: staged from the last copy by fingerprint (fp-2 is new).
    assert (await run(priced, other))["counts"]["created"] == 1
    edited = {**priced, "updated_at": (t0 + timedelta(minutes=1)).isoformat(), "description": "x"}
    assert (await run(edited, other))["counts"]["updated"] == 1
    await eventually(
        lambda: get_asset(http, system, provider, "fp-1"),
        lambda found: found[1].get("description") == "x",
        what="the edit applied",
    )
    await asyncio.sleep(1)  # a price tick, had one been sent, would be applied by now
    assert await latest() == "120"


async def test_a_held_json_lines_feed_rejected_with_the_cli_changes_nothing(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], files: FileHost
) -> None:
    t0 = now() - timedelta(minutes=10)
    assets = [asset_doc(f"jl-{i}", t0) for i in range(3)]
    lines = b"".join(json.dumps(a).encode() + b"\n" for a in assets)
    (files.folder / "feed.jsonl").write_bytes(lines)
    _, feed = system.cli(
        "feed",
        "add",
        provider["provider_id"],
        files.url("feed.jsonl"),
        "--format",
        "jsonl",
        "--json",
    )
    assert (await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json"))[0] == 0
    await eventually(
        lambda: get_asset(http, system, provider, "jl-2"), lambda r: r[0] == 200, what="applied"
    )
    (files.folder / "feed.jsonl").write_bytes(b"\n")
    code, held = await cli(system, "feed", "trigger", feed["feed_id"], "--wait", "--json")
    assert code == 3 and held["reason_code"] == "empty_feed", held
    code, rejected = await cli(system, "feed", "reject", held["run_id"], "--json")
    assert code == 0 and rejected["status"] == "rejected"
    assert rejected["reason_code"] == "rejected_by_operator"
    code, _ = await cli(system, "feed", "approve", held["run_id"], "--json")
    assert code == 1
    await asyncio.sleep(1)
    for asset in assets:
        assert (await get_asset(http, system, provider, asset["id"]))[0] == 200
