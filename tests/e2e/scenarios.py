"""What every fault scenario shares with the soak: a system of the real services on servers of the
scenario's own (private RabbitMQ nodes, a private Postgres, or the shared ones), the soak's load
and ledger, and one verdict — the ledger checked against receipts, stored assets, investor prices
and the store's own receipts — printed as one `FIGURES` line per scenario for
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from yarl import URL

from rwasync.platform.db import is_transient
from rwasync.store.catalog import read_changes
from tests.e2e.test_flows import bearer
from tests.e2e.test_soak import (
    POOL,
    _read_all,
    _stored_receipts,
    _wait_decided,
    asset_content,
    asset_hash,
)
from tests.support.infra import Infra, create_database, drop_database, unique_name
from tests.support.ledger import (
    Findings,
    Request,
    Window,
    calls,
    check_answers,
    check_assets,
    check_change_feed,
    check_patch_order,
    check_prices,
    check_receipts,
    check_store_events,
    check_tenant_walls,
)
from tests.support.system import System
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def scenario_system(
    infra: Infra,
    template: str,
    workdir: Path,
    *,
    amqp_url: str,
    database_admin_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[System]:
    """A database of its own (on the shared Postgres, or on `database_admin_url`'s server, then
    migrated from the template's schema by the CLI) and the given broker; services not started."""
    admin = database_admin_url or infra.postgres_admin_url
    name = unique_name("rwasync_fault")
    await create_database(admin, name, template=None if database_admin_url else template)
    database_url = str(URL(admin).with_path("/" + name))
    # The verdict reads back every receipt: above a provider's default request rate.
    env = {
        "RWASYNC_INGEST_RATE_PER_SECOND": "100000",
        "RWASYNC_INGEST_RATE_BURST": "100000",
        **(extra_env or {}),
    }
    system = System(database_url, amqp_url, workdir, extra_env=env)
    try:
        if database_admin_url:
            await asyncio.to_thread(system.cli, "migrate")
        yield system
    finally:
        await asyncio.to_thread(system.stop_all)
        with contextlib.suppress(Exception):
            await drop_database(admin, name)


INTRUDER_DOC = {"status": "active", "description": "Intruder copy."}
INTRUDER_CONTENT = asset_content(INTRUDER_DOC)


@dataclass
class ChangeFeedReader:
    """A change-feed consumer beside the load: reads `GET /v1/catalog/changes` (its store
    function, `read_changes`) page after page, resuming from each `next_cursor`, and keeps every
    entry; it rides out database outages by reconnecting."""

    database_url: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    errors: int = 0
    # What ended the reader early (anything but an outage), for the verdict to show.
    failure: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        conn: asyncpg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.database_url, timeout=5)
                page = await read_changes(conn, self.cursor, limit=500)
                self.entries.extend(page["items"])
                self.cursor = page["next_cursor"]
                if not page["items"]:
                    await asyncio.sleep(0.2)
            except Exception as exc:
                # An outage as the services count one (asyncpg's InternalClientError included:
                # a connection killed mid-query can end in it), or anything asyncpg raises.
                outage = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
                if not (isinstance(exc, outage) or is_transient(exc)):
                    # a 410 (CursorExpired), say: the reader cannot go on
                    self.failure = f"at cursor {self.cursor}: {exc!r}"
                    break
                self.errors += 1
                conn = None
                await asyncio.sleep(0.5)
        if conn is not None and not conn.is_closed():
            await conn.close()

    async def drain(self, quiet: float = 3.0, timeout: float = 60.0) -> None:
        """Keep reading until nothing new came for `quiet` seconds, then stop."""
        deadline = time.monotonic() + timeout
        count, since = len(self.entries), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            await asyncio.sleep(0.2)
            if len(self.entries) != count:
                count, since = len(self.entries), time.monotonic()
        self._stop.set()


async def _intrude(
    http: aiohttp.ClientSession, ingest_url: str, intruder: dict[str, str], stop_at: float
) -> None:
    """Another provider pushes the same asset ids meanwhile (its own documents)."""
    rng = random.Random()
    while time.monotonic() < stop_at:
        asset_id = rng.choice(POOL)
        body = {
            "id": asset_id,
            "updated_at": f"2026-01-01T00:00:{rng.randrange(60):02d}Z",
            "name": f"{asset_id} Elsewhere",
            **INTRUDER_DOC,
        }
        try:
            async with http.put(
                f"{ingest_url}/v1/assets/{asset_id}", json=body, headers=bearer(intruder)
            ) as answer:
                await answer.read()
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)


@dataclass
class Verdict:
    scenario: str
    findings: Findings
    accepted: int
    requests: int
    five_xx: int
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        f = self.findings.figures
        figures = {
            "requests": self.requests,
            "accepted": self.accepted,
            "lost": f.get("lost", 0),
            "duplicated": f.get("duplicate_effects", 0),
            "stale": f.get("stale_overwrites", 0) + f.get("price_regressions", 0),
            "wrongful_deletions": f.get("wrongful_deletions", 0),
            "feed_gaps": f.get("change_feed_gaps", 0) + f.get("change_feed_repeats", 0),
            "cross_tenant": f.get("cross_tenant", 0),
            "feed_entries": f.get("change_feed_entries", 0),
            "patches": f.get("patch_receipts", {}),
            "5xx": self.five_xx,
            **self.extra,
        }
        return f"FIGURES {self.scenario} " + json.dumps(figures, sort_keys=False)


async def verdict(
    scenario: str,
    system: System,
    ledger: list[Request],
    windows: list[Window],
    provider: dict[str, str],
    reader: dict[str, str],
    *,
    feed: ChangeFeedReader | None = None,
    intruder: dict[str, str] | None = None,
    pool: list[str] = POOL,
) -> Verdict:
    """Wait until every 202 is decided, read back everything, and run every ledger check (the
    change feed's when a reader ran, the tenant wall's when an intruder pushed)."""
    accepted_ids = [str(r.event_id) for r in ledger if r.accepted]
    undecided, waited = await _wait_decided(system.database_url, accepted_ids)
    if feed is not None:
        await feed.drain()
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        ingest = system.url("ingest-api")
        read = await _read_all(
            http, {e: f"{ingest}/v1/events/{e}" for e in accepted_ids}, bearer(provider)
        )
        receipts = {e: (body if status == 200 else None) for e, (status, body) in read.items()}
        assets = await _read_all(
            http, {a: f"{ingest}/v1/assets/{a}" for a in pool}, bearer(provider)
        )
        prices_url = f"{system.url('pricing')}/v1/prices/{provider['provider_id']}"
        prices = await _read_all(http, {a: f"{prices_url}/{a}" for a in pool}, bearer(reader))
        if intruder is not None:
            intruder_reads = await _read_all(
                http, {a: f"{ingest}/v1/assets/{a}" for a in pool}, bearer(intruder)
            )
            foreign = await _read_all(
                http, {e: f"{ingest}/v1/events/{e}" for e in accepted_ids[:100]}, bearer(intruder)
            )
    stored = await _stored_receipts(system.database_url, provider["provider_id"])
    findings = Findings()
    check_answers(ledger, windows, findings)
    check_store_events(ledger, stored, findings)
    check_receipts(ledger, receipts, findings)
    check_patch_order(ledger, stored, findings)
    check_assets(ledger, assets, asset_content, asset_hash, receipts, findings)
    check_prices(ledger, prices, findings)
    if feed is not None:
        applied = {
            r.event_id: r.asset_id
            for r in stored
            if r.status == "applied" and r.type.startswith("asset.")
        }
        check_change_feed(feed.entries, applied, assets, provider["provider_id"], findings)
        if feed.failure:
            findings.add("change-feed gaps", f"the reader stopped {feed.failure}")
    if intruder is not None:
        check_tenant_walls(
            intruder_reads,
            INTRUDER_CONTENT,
            asset_content,
            {e: status for e, (status, _) in foreign.items()},
            findings,
        )
    five_xx = sum(1 for r in calls(ledger) for a in r.attempts if a.status >= 500)
    return Verdict(
        scenario,
        findings,
        accepted=len(accepted_ids),
        requests=len(ledger),
        five_xx=five_xx,
        extra={
            "undecided": undecided,
            "decided_within_s": round(waited, 1),
            "feed_reader_outages": feed.errors if feed is not None else 0,
        },
    )


def outage_figures(
    ledger: list[Request], fault_at: float, fault_end: float, until: float
) -> dict[str, float]:
    """Around a fault from wall-clock `fault_at` to `fault_end` (the server back, the alarm
    cleared): the 503 window (first to last failed answer between the fault and `until`), the
    recovery time (the fault's start to the end of the last failed answer) and how long failures
    lingered after the fault ended."""
    failed = [
        a
        for r in calls(ledger)
        for a in r.attempts
        if a.status != 202 and fault_at - 1 <= a.ended and a.started <= until
    ]
    if not failed:
        return {"window_503_s": 0.0, "recovery_s": 0.0, "lingering_s": 0.0, "failed_answers": 0}
    first = min(a.started for a in failed)
    last = max(a.ended for a in failed)
    return {
        "window_503_s": round(last - first, 1),
        "recovery_s": round(max(0.0, last - fault_at), 1),
        "lingering_s": round(max(0.0, last - fault_end), 1),
        "failed_answers": len(failed),
    }


def now() -> float:
    return time.time()


@dataclass
class Faulting:
    """A fault schedule's clock and notes: offsets from the load's start, the windows in which
    503s are expected, and what happened when."""

    t0: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end

    def note(self, text: str) -> None:
        self.notes.append(f"{time.monotonic() - self.t0:5.1f}s {text}")

    async def at(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + offset - time.monotonic()))

    def fault(
        self, name: str, start: float, end: float, grace: float, *, since: float | None = None
    ) -> None:
        """A fault from wall-clock `start` to `end` (the system ready again): 503s expected from
        `since` (default `start`; earlier when the fault took hold while being set up) until
        `grace` seconds after `end`."""
        self.windows.append(Window(since or start, end + grace))
        self.faults.append((name, start, end))


async def load_with_faults(
    system: System,
    provider: dict[str, str],
    seconds: float,
    schedule: Callable[[Faulting], Awaitable[None]],
    *,
    clients: int = 8,
    batch_share: float = 0.1,
    delete_share: float = 0.05,
    patch_share: float = 0.1,
    ingest_url: str | None = None,
    feed: ChangeFeedReader | None = None,
    intruder: dict[str, str] | None = None,
) -> tuple[list[Request], Faulting, int]:
    """The soak's load (single pushes, deletions, merge patches, batches of assets and prices)
    for `seconds`, the schedule beside it, and, when given, a change-feed reader and another
    provider pushing the same ids; returns the ledger, the schedule's record and the seed. The
    reader keeps running (the verdict drains it)."""
    from tests.e2e.test_soak import Load

    seed = random.randrange(2**32)
    url = ingest_url or system.url("ingest-api")
    if feed is not None:
        _background.add(asyncio.create_task(feed.run()))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        load = Load(
            http,
            url,
            bearer(provider),
            seed,
            clients=clients,
            batch_share=batch_share,
            delete_share=delete_share,
            patch_share=patch_share,
        )
        faulting = Faulting()
        faults = asyncio.create_task(schedule(faulting))
        side = []
        if intruder is not None:
            side.append(
                asyncio.create_task(_intrude(http, url, intruder, time.monotonic() + seconds))
            )
        await load.run(seconds)
        await asyncio.gather(*side)
        await asyncio.wait_for(faults, timeout=120)
    return load.ledger, faulting, seed


_background: set[asyncio.Task[None]] = set()


async def ready(url: str, timeout: float = 60) -> None:
    """Wait for `url`'s /readyz to answer 200; on failure, the last answer's checks say which
    dependency the service found missing."""

    async def probe(http: aiohttp.ClientSession) -> tuple[int, str]:
        try:
            async with http.get(url + "/readyz") as response:
                return response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 0, repr(exc)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await eventually(
            lambda: probe(http),
            lambda answer: answer[0] == 200,
            timeout=timeout,
            interval=0.2,
            what=f"{url} ready",
        )


def report(result: Verdict, faulting: Faulting, ledger: list[Request], seed: int) -> None:
    """Print the scenario's figures (and each fault's 503 window and recovery time)."""
    ends = [w.start for w in faulting.windows[1:]] + [time.time()]
    for (name, start, end), until in zip(faulting.faults, ends, strict=True):
        result.extra[name] = outage_figures(ledger, start, end, until)
    print()
    print(result.line())
    for note in faulting.notes:
        print(f"  {note}")
    print(f"  answers: {result.findings.figures.get('answers')} (seed {seed})")
    if result.findings.total():
        print(result.findings.report())


@dataclass
class People:
    provider: dict[str, str]
    reader: dict[str, str]
    intruder: dict[str, str]  # another provider, pushing the same asset ids


async def people_of(system: System) -> People:
    made = []
    for kind in ("provider", "reader", "provider"):
        _, created = await asyncio.to_thread(
            system.cli, kind, "create", unique_name(kind.title()), "--json"
        )
        made.append(dict(created))
    return People(*made)


async def run_scenario(
    name: str,
    system: System,
    people: People,
    schedule: Callable[[Faulting], Awaitable[None]],
    seconds: float = 45.0,
    **load: Any,
) -> Verdict:
    """The load with a change-feed reader and an intruder beside it, the schedule, the verdict
    (printed)."""
    feed = ChangeFeedReader(system.database_url)
    ledger, faulting, seed = await load_with_faults(
        system, people.provider, seconds, schedule, feed=feed, intruder=people.intruder, **load
    )
    result = await verdict(
        name,
        system,
        ledger,
        faulting.windows,
        people.provider,
        people.reader,
        feed=feed,
        intruder=people.intruder,
    )
    result.extra["503_without_retry_after"] = len(without_retry_after(ledger))
    report(result, faulting, ledger, seed)
    return result


def without_retry_after(ledger: list[Request]) -> list[str]:
    return [
        f"503 without Retry-After at {a.started:.3f}"
        for r in calls(ledger)
        for a in r.attempts
        if a.status == 503 and not a.retry_after
    ][:5]
