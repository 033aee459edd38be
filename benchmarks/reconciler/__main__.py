"""The reconciler's apply rate, against the raw limit of the same rows, in one run.

    .venv/bin/python -m benchmarks.reconciler [--events 100000] [--per-message 500]
                                              [--replicas 3] [--skip-replicas] [--rounds 3]
                                              [--prefetch N] [--shares N] [--applies-at-once N]
                                              [--linger S] [--group-events N] [--profile FILE]

On a scratch database and vhost of its own:
1. raw limit: a plain asyncpg COPY of the events' rows into a staging table plus one guarded
   merge into a copy of the assets table, fresh and then all stale;
2. fresh: the events preloaded in the queue (many per message, `accepted` receipts recorded as
   ingest-api would), one reconciler started, the drain timed until every message is acked;
3. re-delivery: the same messages again (all stale): timed the same way, and no asset row may
   be written (checked by every row's xmin);
4. replicas: as many fresh events again, drained by N reconcilers started together on the
   preloaded queue (the later ones' start-up overlaps the first one's drain);
5. arrival: the replicas already running and idle, fresh events published to them, timed from
   the first publish until all are acked: to N replicas and then to one, alternately, `--rounds`
   times each on new events, each after an untimed tenth to warm them up; the ratio of the
   medians compares running services, start-ups apart, on a box whose speed wanders by a
   tenth from one drain to the next;
and after each drain, how long the change feed's relay takes to publish the last entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from tests.support.system import ServiceProcess, System, free_port

from benchmarks.cpu import Cpu, cpu_sample, cpu_seconds, cpu_spent
from benchmarks.reconciler.workload import Workload, build
from benchmarks.scratch import scratch_system
from rwasync.platform.broker import Broker
from rwasync.platform.db import connect
from rwasync.schema import topology

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ACKED = re.compile(
    r'rwasync_messages_consumed_total\{(?=[^}]*outcome="acked")'
    r'(?=[^}]*queue="rwasync\.reconciler\.assets")[^}]*\} (\S+)'
)
CONSUMERS = re.compile(r'rwasync_queue_consumers\{queue="rwasync\.reconciler\.assets"\} (\S+)')

RAW_TABLES = """
CREATE TABLE raw_assets (LIKE assets INCLUDING ALL);
CREATE TEMP TABLE raw_staging (
    provider_id text, asset_id text, updated_at timestamptz, deleted boolean,
    accepted_at timestamptz, event_id uuid, source text, document jsonb, content_hash bytea,
    status text)
"""
RAW_MERGE = """
INSERT INTO raw_assets AS a (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                             source, document, content_hash, status, applied_at)
SELECT provider_id, asset_id, updated_at, deleted, accepted_at, event_id, source, document,
       content_hash, status, now()
FROM raw_staging
ON CONFLICT (provider_id, asset_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted,
    accepted_at = EXCLUDED.accepted_at, event_id = EXCLUDED.event_id, source = EXCLUDED.source,
    document = EXCLUDED.document, content_hash = EXCLUDED.content_hash, status = EXCLUDED.status,
    applied_at = now()
WHERE (EXCLUDED.updated_at, EXCLUDED.deleted, EXCLUDED.accepted_at, EXCLUDED.event_id)
      > (a.updated_at, a.deleted, a.accepted_at, a.event_id)
"""
RECORD_ACCEPTED = """
INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, accepted_at)
SELECT e, $1, a, 'asset.upserted', 'accepted', ts
FROM unnest($2::uuid[], $3::text[], $4::timestamptz[]) AS u(e, a, ts)
"""
ROWS_FINGERPRINT = "SELECT count(*), sum(hashtext(xmin::text || event_id::text)) FROM assets"
RELAY_CAUGHT_UP = """
SELECT (SELECT (xid, change_id) FROM change_relays)
       >= COALESCE((SELECT (xid, change_id) FROM asset_changes
                    ORDER BY xid DESC, change_id DESC LIMIT 1), ('0'::xid8, 0))
"""


@dataclass
class Figure:
    what: str
    events: int
    seconds: float
    baseline: str = ""
    ratio: float | None = None
    cpu: Cpu | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class Handled:
    """Counts the replicas' "message handled" log lines (logged right after each ack) from
    where their logs are now: polling their /metrics instead every few tens of milliseconds
    would cost each replica CPU of its own, the more replicas the more."""

    def __init__(self, replicas: list[ServiceProcess]) -> None:
        self._logs: list[Path] = [r.log_path for r in replicas]
        self._offsets = [path.stat().st_size if path.exists() else 0 for path in self._logs]
        self.count = 0

    def update(self) -> int:
        for index, path in enumerate(self._logs):
            with path.open("rb") as log:
                log.seek(self._offsets[index])
                lines = log.read().rpartition(b"\n")[0]
            if lines:
                self._offsets[index] += len(lines) + 1
                self.count += lines.count(b'"event": "message handled"')
        return self.count


def wait_handled(handled: Handled, messages: int, timeout: float = 600) -> None:
    """Until `messages` messages are handled (`handled` set up before they could be)."""
    began = time.monotonic()
    while handled.update() < messages:
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{handled.count} of {messages} messages handled")
        time.sleep(0.02)


def wait_consumers(replicas: list[ServiceProcess], timeout: float = 30) -> None:
    """Until every replica has seen the queue with as many consumers as there are replicas
    (they share their applies at once by it: `EventConsumer`'s `concurrency_shared`)."""
    deadline = time.monotonic() + timeout
    while any(consumers(r) != len(replicas) for r in replicas):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the replicas did not all see {len(replicas)} consumers")
        time.sleep(0.2)


def consumers(service: ServiceProcess) -> int:
    found = CONSUMERS.search(metrics_text(service))
    return int(float(found.group(1))) if found else 0


def metrics_text(service: ServiceProcess) -> str:
    with urllib.request.urlopen(service.url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


def check_acked(replicas: list[ServiceProcess], messages: int, *, before: int = 0) -> None:
    """The replicas' metrics agree that the `messages` their logs say were handled were acked."""
    if sum(acked(r) for r in replicas) - before < messages:
        raise RuntimeError("messages logged as handled were not all acked")


def acked(service: ServiceProcess) -> int:
    found = ACKED.search(metrics_text(service))
    return int(float(found.group(1))) if found else 0


async def preload(amqp_url: str, bodies: list[bytes]) -> None:
    broker = Broker(amqp_url, publish_timeout=60, name="bench-preload")
    broker.start()
    await broker.wait_ready(timeout=30)
    try:
        for start in range(0, len(bodies), 50):
            await asyncio.gather(
                *(
                    broker.publish_body(
                        topology.ASSETS_EXCHANGE,
                        topology.ASSET_BATCH_KEY,
                        body,
                        message_id=str(uuid.uuid4()),
                    )
                    for body in bodies[start : start + 50]
                )
            )
    finally:
        await broker.close()


async def record_receipts(database_url: str, provider_id: str, w: Workload) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(RECORD_ACCEPTED, provider_id, w.event_ids, w.asset_ids, w.accepted_at)
    finally:
        await conn.close()


async def raw_limit(database_url: str, provider_id: str, w: Workload) -> list[tuple[float, Cpu]]:
    """Seconds (and CPU: this process, its backend) for COPY + one guarded merge of the rows:
    fresh, then the same rows again."""
    records = [
        (provider_id, a, w.updated_at, False, t, e, "batch", d, bytes.fromhex(h), "active")
        for a, t, e, d, h in zip(
            w.asset_ids, w.accepted_at, w.event_ids, w.documents, w.hashes, strict=True
        )
    ]
    conn = await connect(database_url)
    try:
        await conn.execute(RAW_TABLES)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        timings = []
        for _ in range(2):
            await conn.execute("TRUNCATE raw_staging")
            began, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(backend)
            async with conn.transaction():
                await conn.copy_records_to_table("raw_staging", records=records)
                await conn.execute(RAW_MERGE)
            spent = Cpu(time.process_time() - cpu, cpu_seconds(backend) - db_cpu)
            timings.append((time.perf_counter() - began, spent))
        await conn.execute("DROP TABLE raw_assets")
        return timings
    finally:
        await conn.close()


async def fingerprint(database_url: str) -> tuple[int, int]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(ROWS_FINGERPRINT)
        assert row is not None
        return int(row[0]), int(row[1] or 0)
    finally:
        await conn.close()


async def relay_catch_up(database_url: str, timeout: float = 600) -> float:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    began = time.perf_counter()
    try:
        while not await conn.fetchval(RELAY_CAUGHT_UP):
            if time.perf_counter() - began > timeout:
                raise TimeoutError("the relay did not catch up")
            await asyncio.sleep(0.05)
        return time.perf_counter() - began
    finally:
        await conn.close()


def consuming_since(service: ServiceProcess) -> float:
    """When the service last logged that it started consuming (epoch seconds)."""
    started = None
    for line in service.log_path.read_text(errors="replace").splitlines():
        if '"event": "consuming"' in line:
            started = datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    if started is None:
        raise RuntimeError(f"{service.name} never logged that it consumes")
    return started


def drain(
    replicas: list[ServiceProcess], handled: Handled, messages: int, database_url: str
) -> tuple[float, Cpu]:
    """Seconds from the first fresh replica consuming until they all acked `messages` (counted
    by `handled`, set up before they started), and the CPU spent meanwhile (from the moment the
    replicas were ready: start-up excluded)."""
    for replica in replicas:
        replica.wait()
    pids = [r.process.pid for r in replicas if r.process is not None]
    before = cpu_sample(pids, database_url)
    wait_handled(handled, messages)
    ended = time.time()
    # Backends opened during the drain count from zero.
    spent = cpu_spent(before, cpu_sample(pids, database_url))
    check_acked(replicas, messages)
    return ended - min(consuming_since(r) for r in replicas), spent


def arrival(
    replicas: list[ServiceProcess], provider_id: str, w: Workload, system: System
) -> tuple[float, Cpu]:
    """Seconds from the first publish of `w` to running, idle `replicas` until they acked all
    its messages, and the CPU they and Postgres spent meanwhile."""
    for replica in replicas:
        replica.wait()
    wait_consumers(replicas)
    amqp_url, database_url = system.amqp_url, system.database_url
    asyncio.run(record_receipts(database_url, provider_id, w))
    pids = [r.process.pid for r in replicas if r.process is not None]
    handled, acked_before = Handled(replicas), sum(acked(r) for r in replicas)
    before = cpu_sample(pids, database_url)
    began = time.monotonic()
    asyncio.run(preload(amqp_url, w.bodies))
    wait_handled(handled, len(w.bodies))
    seconds = time.monotonic() - began
    spent = cpu_spent(before, cpu_sample(pids, database_url))
    check_acked(replicas, len(w.bodies), before=acked_before)
    return seconds, spent


def arrivals(
    system: System,
    provider_id: str,
    reconciler: ServiceProcess,
    extra: list[ServiceProcess],
    args: argparse.Namespace,
) -> list[Figure]:
    """`args.rounds` arrivals to N running replicas and to one, alternately (N first, the
    extra replicas stopped and started between), and the ratio of their medians. Before each
    timed arrival an untimed one of a tenth as many events warms the replicas up (a replica
    just started pays for its first transactions' catalog lookups, plans and pool), as the one
    replica that runs throughout is warm."""
    timed: dict[int, list[tuple[float, Cpu]]] = {1: [], args.replicas: []}
    for round_ in range(args.rounds):
        for count in (args.replicas, 1):
            for replica in extra:
                if count == 1:
                    replica.stop()
                elif replica.process is None:
                    replica.start()
            replicas = [reconciler, *extra][:count]
            tag = f"arrive-{count}-{round_}"
            warm = build(provider_id, f"{tag}-warm", args.events // 10, args.per_message)
            arrival(replicas, provider_id, warm, system)
            w = build(provider_id, tag, args.events, args.per_message)
            timed[count].append(arrival(replicas, provider_id, w, system))
    figures = []
    for count, runs in timed.items():
        name = f"arrival, {count} replica{'s' if count > 1 else ''} running"
        figures += [Figure(name, args.events, seconds, cpu=cpu) for seconds, cpu in runs]
    one, many = (statistics.median(s for s, _ in timed[c]) for c in (1, args.replicas))
    figures.append(
        Figure(
            f"arrival, {args.replicas} replicas running: median of {args.rounds}",
            args.events,
            many,
            f"1 replica's median ({one:.2f} s)",
            one / many,
        )
    )
    return figures


def profile(service: ServiceProcess, path: str) -> subprocess.Popen[bytes]:
    """py-spy (collapsed stacks, `--format raw`) on a service until interrupted."""
    assert service.process is not None
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(service.process.pid),
            "--output",
            path,
            "--format",
            "raw",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(system: System, args: argparse.Namespace) -> tuple[list[Figure], bool]:
    """Every figure of one run, and whether the re-delivery wrote any asset row."""
    figures: list[Figure] = []
    extra: list[ServiceProcess] = []
    database_url, amqp_url, workdir = system.database_url, system.amqp_url, system.workdir
    written = False
    try:
        system.cli("migrate")
        _, provider = system.cli("provider", "create", "Bench Estates", "--json")
        pid = provider["provider_id"]
        n = args.events
        print(f"building {n} events, {args.per_message} per message ...", flush=True)
        fresh = build(pid, "one", n, args.per_message)

        (raw_fresh, fresh_cpu), (raw_stale, stale_cpu) = asyncio.run(
            raw_limit(database_url, pid, fresh)
        )
        figures.append(Figure("raw: COPY + guarded merge, fresh rows", n, raw_fresh, cpu=fresh_cpu))
        figures.append(Figure("raw: COPY + guarded merge, all stale", n, raw_stale, cpu=stale_cpu))

        asyncio.run(record_receipts(database_url, pid, fresh))
        asyncio.run(preload(amqp_url, fresh.bodies))
        log_path = workdir / "reconciler.log"
        reconciler = ServiceProcess("reconciler", free_port(), system.env, log_path)
        system.services["reconciler"] = reconciler  # stopped with the system
        handled = Handled([reconciler])
        reconciler.start()
        spy = profile(reconciler, args.profile) if args.profile else None
        seconds, cpu = drain([reconciler], handled, len(fresh.bodies), database_url)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        lag = asyncio.run(relay_catch_up(database_url))
        figures.append(
            Figure(
                "reconciler, fresh, 1 replica", n, seconds, "raw fresh", raw_fresh / seconds, cpu
            )
        )
        figures.append(Figure("change feed relayed, after the fresh drain", 0, lag or 1e-9))

        # Each drain starts with fresh processes and a preloaded queue.
        reconciler.stop()
        before = asyncio.run(fingerprint(database_url))
        asyncio.run(preload(amqp_url, fresh.bodies))
        handled = Handled([reconciler])
        reconciler.start()
        again, cpu = drain([reconciler], handled, len(fresh.bodies), database_url)
        written = asyncio.run(fingerprint(database_url)) != before
        figures.append(
            Figure("re-delivery of the same (all stale)", n, again, "fresh", seconds / again, cpu)
        )

        if not args.skip_replicas:
            more = build(pid, "three", n, args.per_message)
            reconciler.stop()
            asyncio.run(record_receipts(database_url, pid, more))
            asyncio.run(preload(amqp_url, more.bodies))
            extra = [
                ServiceProcess("reconciler", free_port(), system.env, workdir / f"replica-{i}.log")
                for i in range(args.replicas - 1)
            ]
            handled = Handled([reconciler, *extra])
            for replica in [reconciler, *extra]:
                replica.start()
            many, cpu = drain([reconciler, *extra], handled, len(more.bodies), database_url)
            lag3 = asyncio.run(relay_catch_up(database_url))
            figures.append(
                Figure(
                    f"reconciler, fresh, {args.replicas} replicas started on the preloaded queue",
                    n,
                    many,
                    "1 replica",
                    seconds / many,
                    cpu,
                )
            )
            figures.append(Figure("change feed relayed, after the replicas' drain", 0, lag3))

            figures += arrivals(system, pid, reconciler, extra, args)
    finally:
        for replica in extra:
            replica.stop()
    return figures, written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-message", type=int, default=500)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--skip-replicas", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="arrivals to N replicas and to one (default 3 each)"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy the reconciler during the fresh drain"
    )
    parser.add_argument(
        "--prefetch", type=int, help="RWASYNC_RECONCILER_PREFETCH (default: the service's own)"
    )
    parser.add_argument(
        "--shares",
        type=int,
        help="RWASYNC_RECONCILER_APPLY_SHARES (default: the service's own)",
    )
    parser.add_argument(
        "--applies-at-once",
        type=int,
        help="RWASYNC_RECONCILER_APPLIES_AT_ONCE (default: the service's own)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        help="RWASYNC_RECONCILER_APPLY_LINGER (default: the service's own)",
    )
    parser.add_argument(
        "--group-events",
        type=int,
        help="RWASYNC_RECONCILER_APPLY_GROUP_EVENTS (default: the service's own)",
    )
    args = parser.parse_args()
    settings = {
        name: str(value)
        for name, value in (
            ("RWASYNC_RECONCILER_PREFETCH", args.prefetch),
            ("RWASYNC_RECONCILER_APPLY_SHARES", args.shares),
            ("RWASYNC_RECONCILER_APPLIES_AT_ONCE", args.applies_at_once),
            ("RWASYNC_RECONCILER_APPLY_LINGER", args.linger),
            ("RWASYNC_RECONCILER_APPLY_GROUP_EVENTS", args.group_events),
        )
        if value is not None
    }
    scratch = scratch_system(**settings)
    with scratch as system:
        figures, written = measure(system, args)

    chosen = "".join(f", {name} {value}" for name, value in settings.items())
    print(f"\n{args.events} events, {args.per_message} per message{chosen}\n")
    print(
        "| what | events | seconds | events/s | ratio | CPU µs/event: Python | CPU µs/event:"
        " Postgres |"
    )
    print("|---|---|---|---|---|---|---|")
    for f in figures:
        rate = f"{f.rate:,.0f}" if f.events else "—"
        ratio = f"{f.ratio:.2f} × {f.baseline}" if f.ratio is not None else ""
        python = postgres = ""
        if f.cpu is not None and f.events:
            python = f"{f.cpu.service / f.events * 1e6:.0f}"
            postgres = f"{f.cpu.database / f.events * 1e6:.0f}"
        print(
            f"| {f.what} | {f.events or ''} | {f.seconds:.2f} | {rate} | {ratio} | {python}"
            f" | {postgres} |"
        )
    print(f"\nasset rows written by the re-delivery: {'SOME (defect)' if written else 0}")


if __name__ == "__main__":
    main()
