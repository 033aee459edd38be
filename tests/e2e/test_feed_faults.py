"""Feed runs under broker cuts, with pushes landing during the runs: the real services, the
feed-poller reaching the broker through a proxy that is cut in the middle of every other run.

Each run lists FEED_SIZE assets at a newer version than the last. While it runs, the provider
pushes (a) one listed asset at a version just after the run's, which the run must not overwrite,
and (b) an unlisted asset with an old `updated_at`, which the run must not delete (it was accepted
after the run started). A run may fail (`broker_unavailable`) but never end `ok` with some of its
events unpublished: after an `ok` run every listed asset is at its version. Slow:
`make test-faults`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from rwasync.schema.timestamps import timestamp_text
from tests.e2e.scenarios import people_of, scenario_system
from tests.e2e.test_feed_formats import FileHost
from tests.e2e.test_flows import bearer
from tests.support.infra import Infra
from tests.support.system import System
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEED_SIZE = 1500
RUNS = 8
CUT_FOR = 3.0
APPLY_TIMEOUT = 60.0


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[FileHost]:
    host = FileHost(tmp_path)
    await host.start()
    yield host
    assert host.runner is not None
    await host.runner.cleanup()


def _doc(asset_id: str, version: datetime, label: str) -> dict[str, Any]:
    return {
        "id": asset_id,
        "updated_at": timestamp_text(version),
        "status": "active",
        "name": f"{asset_id} Feed Street",
        "description": label,
    }


async def _versions(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], ids: list[str]
) -> dict[str, tuple[int, dict[str, Any]]]:
    gate = asyncio.Semaphore(32)
    out: dict[str, tuple[int, dict[str, Any]]] = {}

    async def one(asset_id: str) -> None:
        async with (
            gate,
            http.get(
                f"{system.url('ingest-api')}/v1/assets/{asset_id}", headers=bearer(provider)
            ) as r,
        ):
            out[asset_id] = (r.status, await r.json() if r.status == 200 else {})

    await asyncio.gather(*(one(a) for a in ids))
    return out


async def _push(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], doc: dict[str, Any]
) -> str:
    """PUT until a 202 (bounded); its event id, or "" when it never came."""
    for _ in range(30):
        async with http.put(
            f"{system.url('ingest-api')}/v1/assets/{doc['id']}", json=doc, headers=bearer(provider)
        ) as r:
            if r.status == 202:
                return str((await r.json())["event_id"])
            await asyncio.sleep(0.5)
    return ""


async def _decided(
    http: aiohttp.ClientSession, system: System, provider: dict[str, str], events: list[str]
) -> bool:
    for event_id in events:
        async with http.get(
            f"{system.url('ingest-api')}/v1/events/{event_id}", headers=bearer(provider)
        ) as r:
            if r.status != 200 or (await r.json())["status"] == "accepted":
                return False
    return True


@pytest.mark.timeout(900)
async def test_feed_runs_during_broker_cuts_and_pushes_during_runs(
    test_infra: Infra,
    template_database: str,
    tmp_path: Path,
    vhost_amqp_url: str,
    files: FileHost,
) -> None:
    async with scenario_system(
        test_infra,
        template_database,
        tmp_path,
        amqp_url=vhost_amqp_url,
        extra_env={
            # Slow enough publishing that a cut lands mid-run; a stall is noticed in 2 s.
            "RWASYNC_FEED_POLLER_EVENTS_PER_MESSAGE": "2",
            "RWASYNC_FEED_POLLER_PUBLISH_WINDOW": "1",
            "RWASYNC_FEED_POLLER_CONFIRM_STALL_SECONDS": "2",
            "RWASYNC_FEED_POLLER_POLL_INTERVAL": "0.2",
        },
    ) as system:
        proxy = await TcpProxy.in_front_of(system.amqp_url)
        try:
            await _run(system, proxy, files)
        finally:
            await proxy.cut()


async def _run(system: System, proxy: TcpProxy, files: FileHost) -> None:
    system.extra_env["RWASYNC_AMQP_URL"] = proxy.through(system.amqp_url)
    await asyncio.to_thread(system.start, "feed-poller")
    del system.extra_env["RWASYNC_AMQP_URL"]
    await asyncio.to_thread(system.start, "ingest-api", "reconciler", "pricing")
    people = await people_of(system)
    provider = people.provider
    listed = [f"feed-{n:04d}" for n in range(FEED_SIZE)]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    _, feed = await asyncio.to_thread(
        system.cli,
        "feed", "add", provider["provider_id"], files.url("feed.jsonl"),
        "--format", "jsonl", "--json",
    )  # fmt: skip
    outcomes: list[dict[str, Any]] = []
    unpublished_ok = wrongful = overwritten = 0
    notes: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for k in range(RUNS):
            version = base + timedelta(minutes=k)
            lines = b"".join(
                json.dumps(_doc(a, version, f"run {k}")).encode() + b"\n" for a in listed
            )
            (files.folder / "feed.jsonl").write_bytes(lines)
            t0 = time.monotonic()
            trigger = asyncio.create_task(
                asyncio.to_thread(
                    system.cli, "feed", "trigger", feed["feed_id"], "--wait", "--json", check=False
                )
            )
            cut = k % 2 == 1 and k < RUNS - 1
            # Pushes landing during the run: an unlisted asset with an old updated_at once the
            # run started, and a listed asset just newer than the run's version once it compared.
            newer = _doc(listed[k], version + timedelta(seconds=30), f"pushed during run {k}")
            unlisted = _doc(f"pushed-{k}", base - timedelta(days=1), f"pushed during run {k}")
            await _run_reached(system, feed["feed_id"], k, "started_at")
            if cut:  # the run is fetching: it finds its broker gone when it publishes
                await proxy.cut()
            pushes = [await _push(http, system, provider, unlisted)]
            await _run_reached(system, feed["feed_id"], k, "compared_at")
            pushes.append(await _push(http, system, provider, newer))
            assert all(pushes), "a push during the run was never accepted"
            if cut:
                await asyncio.sleep(CUT_FOR)
                await proxy.restore()
            _, run = await trigger
            run = dict(run or {})
            took = time.monotonic() - t0
            outcomes.append(run)
            notes.append(
                f"run {k}: {'cut' if cut else 'no cut'}, {run.get('status')} "
                f"{run.get('reason_code') or ''} counts={run.get('counts')} in {took:.1f}s"
            )
            # Whatever the run did is applied within the timeout (pushes included).
            deadline = time.monotonic() + APPLY_TIMEOUT
            while True:
                # Decided first, then read: a read before the push's decision could miss it.
                settled = await _decided(http, system, provider, pushes)
                states = await _versions(http, system, provider, [*listed, f"pushed-{k}"])
                at_version = sum(
                    1
                    for a in listed
                    if states[a][0] == 200
                    and states[a][1]["_meta"]["updated_at"] >= timestamp_text(version)
                )
                if (run.get("status") != "ok" or at_version == FEED_SIZE) and settled:
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            if run.get("status") == "ok" and at_version != FEED_SIZE:
                unpublished_ok += 1
                notes.append(
                    f"  run {k} ok, yet {FEED_SIZE - at_version} assets not at its version"
                )
            if states[f"pushed-{k}"][0] != 200:
                wrongful += 1
                notes.append(f"  pushed-{k} (pushed during run {k}) is gone")
            pushed_doc = states[newer["id"]][1]
            if pushed_doc.get("description") != newer["description"]:
                overwritten += 1
                async with http.get(
                    f"{system.url('ingest-api')}/v1/events/{pushes[1]}", headers=bearer(provider)
                ) as r:
                    push_receipt = await r.json()
                notes.append(
                    f"  {newer['id']} pushed during run {k} (updated_at {newer['updated_at']}, "
                    f"receipt {push_receipt.get('status')} {push_receipt.get('reason')}) reads "
                    f"{pushed_doc.get('description')!r} at {pushed_doc.get('_meta')}"
                )
    statuses = [r.get("status") for r in outcomes]
    figures = {
        "runs": len(outcomes),
        "ok": statuses.count("ok"),
        "failed": statuses.count("failed"),
        "ok_with_unpublished": unpublished_ok,
        "wrongful_deletions": wrongful,
        "stale": overwritten,
    }
    print()
    print("FIGURES feed-runs-under-broker-cuts " + json.dumps(figures))
    for note in notes:
        print(f"  {note}")
    assert unpublished_ok == 0 and wrongful == 0 and overwritten == 0
    # The cuts did bite, and a run after a cut completes the catalogue.
    assert figures["failed"] >= 1 and statuses[-1] == "ok", notes


async def _run_reached(system: System, feed_id: str, index: int, column: str) -> None:
    """Wait (bounded) until the feed's run number `index` (from 0) has set `column`."""
    conn = await asyncpg.connect(system.database_url)
    try:
        for _ in range(600):
            reached = await conn.fetchval(
                f"SELECT {column} IS NOT NULL FROM feed_runs WHERE feed_id = $1 "
                "ORDER BY requested_at OFFSET $2 LIMIT 1",
                feed_id,
                index,
            )
            if reached:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError(f"run {index} of {feed_id} never set {column}")
