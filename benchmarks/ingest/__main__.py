"""ingest-api under load, each figure beside the ceiling it is bounded by, all from one run.

    .venv/bin/python -m benchmarks.ingest [--seconds 15] [--connections 64] [--batch 1000]
                                          [--processes 1,2] [--skip-batch]
                                          [--documents small|realistic]

On a scratch database and vhost of its own it starts the real services (ingest-api with 1..N
processes sharing the port through SO_REUSEPORT, and the reconciler applying), drives them with
wrk (installed with apt-get when missing) and Lua scripts on 127.0.0.1, and prints side by side:

- the HTTP ceiling: a bare aiohttp handler parsing the same JSON and answering 202;
- the broker ceiling: raw pipelined confirmed publishes with aio-pika, one event per message;
- single PUT (confirm before 202), ratio to the broker ceiling;
- batch push (assets/s accepted, and applied by the reconciler), ratio to the broker ceiling
  times the events carried per message.

Batches carry small documents by default (id, updated_at, status, name and price: ~150 bytes);
`--documents realistic` sends the feed benchmark's ~1.4 KB assets instead (address, location,
token with its own contract address, price, valuation, rental, legal, area, media, attributes),
5,000 different ones in turn, so every contract's checksum is computed as a real backfill's is.

Machines of this kind differ threefold, so only the ratios compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from tests.support.system import System, free_port, http_status

from benchmarks.cpu import BoxMeter, descendants, pids_named
from benchmarks.feed.catalogue import asset
from benchmarks.ingest.broker_ceiling import measure

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LUA_DIR = Path(__file__).with_name("lua")
# What ingest-api puts in one broker message of a batch (RWASYNC_INGEST_EVENTS_PER_MESSAGE).
EVENTS_PER_MESSAGE = 250


@dataclass
class Figure:
    name: str
    rate: float
    unit: str
    p50_ms: float
    p99_ms: float
    ceiling: float | None = None
    note: str = ""

    def row(self) -> str:
        ratio = f"{self.rate / self.ceiling:.2f}" if self.ceiling else "—"
        return (
            f"| {self.name} | {self.rate:,.0f} {self.unit} | {self.p50_ms:.1f} | "
            f"{self.p99_ms:.1f} | {ratio} | {self.note} |"
        )


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        installed = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        if installed.returncode != 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed and apt-get could not install it")
    return found


def realistic_templates(folder: Path, count: int = 5000) -> Path:
    """`count` realistic asset documents, one JSON per line, each id a placeholder batch.lua
    fills in (the template of a document stays valid: updated in the past, contracts apart)."""
    base = datetime.now(UTC) - timedelta(days=2)
    path = folder / "documents.jsonl"
    with path.open("wb") as out:
        for n in range(count):
            out.write(json.dumps({**asset(n, base=base), "id": "__ID__"}).encode() + b"\n")
    return path


def wrk(url: str, script: str, connections: int, seconds: float, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [
            ensure_wrk(),
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_DIR / script),
            url,
        ],
        env={**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def figure(name: str, result: dict, per_request: int = 1, unit: str = "req/s") -> Figure:
    seconds = result["duration_us"] / 1e6
    note = ""
    if result["non_2xx"] or result["socket_errors"]:
        note = f"{result['non_2xx']} non-2xx, {result['socket_errors']} socket errors"
    return Figure(
        name,
        result["requests"] * per_request / seconds,
        unit,
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
        note=note,
    )


def bare_ceiling(connections: int, seconds: float) -> Figure:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ingest.bare", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{port}/v1/assets/x") is None:
            if time.monotonic() > deadline:
                raise SystemExit("the bare aiohttp server did not start")
            time.sleep(0.1)
        result = wrk(
            f"http://127.0.0.1:{port}", "put.lua", connections, seconds, {"BENCH_TOKEN": "-"}
        )
        return figure("HTTP ceiling: bare aiohttp handler (parse JSON, 202)", result)
    finally:
        server.terminate()
        server.wait(10)


def broker_ceiling(amqp_url: str, window: int, seconds: float, events: int = 1) -> Figure:
    rate, latencies = asyncio.run(measure(amqp_url, seconds, window, events))
    latencies.sort()
    return Figure(
        f"broker ceiling: pipelined confirmed publish, {events} event(s)/message, "
        f"{window} in flight (aio-pika)",
        rate * events,
        "events/s",
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


async def applied_count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM assets")
        return count
    finally:
        await conn.close()


def wait_applied(database_url: str, expected: int, timeout: float) -> float:
    """Seconds until `expected` assets are stored (or the timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if asyncio.run(applied_count(database_url)) >= expected:
            break
        time.sleep(0.5)
    return time.monotonic() - began


@contextlib.contextmanager
def profiling(folder: Path | None, system: System, name: str, seconds: float) -> Iterator[None]:
    """py-spy on ingest-api (all its processes) while the block runs; prints where time went."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    process = system.services["ingest-api"].process
    assert process is not None
    out = folder / f"{name}.txt"
    recorder = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "--duration",
            str(max(1, round(seconds))),
            "--pid",
            str(process.pid),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.wait(60)
    if out.exists():
        print(f"\n{name}: where ingest-api's time went (py-spy, share of samples)")
        for share, where in hot_spots(out):
            print(f"  {share:5.1%}  {where}")


# Frames grouped into the parts of a request, first match wins (by file path).
PARTS = (
    ("validation, normalisation, hashing", ("rwasync/schema/", "pydantic")),
    ("broker publish (aio-pika, aiormq, pamqp)", ("aio_pika", "aiormq", "pamqp")),
    ("database (asyncpg)", ("asyncpg",)),
    ("authentication and limits", ("rwasync/platform/auth", "limits/", "ingest_api/limits")),
    ("idle (waiting in the event loop)", ("select", "epoll")),
    ("HTTP (aiohttp)", ("aiohttp", "multidict", "yarl")),
    ("logging and metrics", ("structlog", "prometheus_client")),
)


def hot_spots(raw: Path) -> list[tuple[float, str]]:
    totals: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples += int(count)
        part = "other (asyncio, ingest-api's own code)"
        for name, markers in PARTS:
            if any(marker in stack for marker in markers):
                part = name
                break
        totals[part] = totals.get(part, 0) + int(count)
    return sorted(((n / max(samples, 1), part) for part, n in totals.items()), reverse=True)


def box_meter(system: System) -> BoxMeter:
    """The machine's CPU by process group during a load phase (wrk is counted apart, from the
    children's rusage, since it has ended by the time the phase is sampled)."""

    def service(name: str) -> list[int]:
        process = system.services[name].process
        return descendants(process.pid) if process is not None else []

    return BoxMeter(
        {
            "ingest-api": lambda: service("ingest-api"),
            "reconciler": lambda: service("reconciler"),
            "postgres": lambda: pids_named("postgres"),
            "rabbitmq": lambda: pids_named("beam.smp"),
        }
    )


async def commits(database_url: str) -> int:
    """Transactions committed in the database so far (its statistics lag by up to 0.5 s)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        count: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return count
    finally:
        await conn.close()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    items: int = 0


@contextlib.contextmanager
def cpu_per_item(system: System, label: str) -> Iterator[Phase]:
    """Print the machine's CPU µs per item of a load phase (the block sets `Phase.items`), by
    process group."""
    meter = box_meter(system)
    meter.start()
    wrk_before = children_cpu()
    commits_before = asyncio.run(commits(system.database_url))
    phase = Phase()
    yield phase
    spent = meter.interval()
    committed = asyncio.run(commits(system.database_url)) - commits_before
    spent["wrk"] = children_cpu() - wrk_before
    spent["other"] -= spent["wrk"]
    count = max(phase.items, 1)
    parts = ", ".join(
        f"{name} {seconds * 1e6 / count:,.0f}" for name, seconds in spent.items() if name != "box"
    )
    print(
        f"{label}: machine CPU {spent['box'] * 1e6 / count:,.0f} µs per item "
        f"({parts}; {spent['box']:.1f} CPU s); {committed / count:.3f} Postgres commits per item",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000, help="assets per batch request")
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--processes", default="1,2", help="ingest-api process counts to try")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument(
        "--documents",
        choices=("small", "realistic"),
        default="small",
        help="the batch's assets: ~150 bytes each, or ~1.4 KB ones as a real catalogue's",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record ingest-api with py-spy during each load phase into this folder",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the services (e.g. RWASYNC_RECONCILER_APPLY_LINGER=0.02); repeatable",
    )
    args = parser.parse_args()
    service_env = dict(setting.split("=", 1) for setting in args.service_env)
    process_counts = [int(n) for n in args.processes.split(",")]

    name = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True
    )
    database_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{name}"
    figures: list[Figure] = []
    try:
        http = bare_ceiling(args.connections, args.seconds)
        figures.append(http)
        broker = broker_ceiling(amqp_url, args.connections, args.seconds)
        figures.append(broker)
        chunked = broker_ceiling(amqp_url, 8, args.seconds, events=EVENTS_PER_MESSAGE)
        if not args.skip_batch:
            figures.append(chunked)
        for processes in process_counts:
            system = System(
                database_url,
                amqp_url,
                Path(tempfile.mkdtemp(prefix="rwasync-bench-")),
                extra_env={
                    "RWASYNC_INGEST_PROCESSES": str(processes),
                    "RWASYNC_LOG_LEVEL": "WARNING",
                    "RWASYNC_RECONCILER_LOG_LEVEL": "WARNING",
                    **service_env,
                },
            )
            try:
                system.cli("migrate")
                _, provider = system.cli("provider", "create", "Bench Estates", "--json")
                system.cli(
                    "provider",
                    "rate",
                    provider["provider_id"],
                    "--per-second",
                    "1000000",
                    "--burst",
                    "1000000",
                    "--json",
                )
                system.start("ingest-api", "reconciler")
                env = {"BENCH_TOKEN": provider["token"], "BENCH_BATCH": str(args.batch)}
                if args.documents == "realistic":
                    env["BENCH_TEMPLATES"] = str(realistic_templates(system.workdir))
                url = system.url("ingest-api")
                with (
                    cpu_per_item(system, f"put-{processes}p") as phase,
                    profiling(args.profile, system, f"put-{processes}p", args.seconds),
                ):
                    result = wrk(url, "put.lua", args.connections, args.seconds, env)
                    phase.items = result["requests"]
                single = figure(f"single PUT, confirm before 202, {processes} process(es)", result)
                single.ceiling = broker.rate
                figures.append(single)
                if not args.skip_batch:
                    before = asyncio.run(applied_count(database_url))
                    began = time.monotonic()
                    with (
                        cpu_per_item(system, f"batch-{processes}p, per asset") as phase,
                        profiling(args.profile, system, f"batch-{processes}p", args.seconds),
                    ):
                        result = wrk(url, "batch.lua", args.batch_connections, args.seconds, env)
                        phase.items = result["requests"] * args.batch
                    accepted = figure(
                        f"batch push ({args.batch}/request), accepted, {processes} process(es)",
                        result,
                        per_request=args.batch,
                        unit="assets/s",
                    )
                    accepted.ceiling = chunked.rate
                    figures.append(accepted)
                    total = result["requests"] * args.batch
                    wait_applied(database_url, before + total, timeout=600)
                    applied_seconds = time.monotonic() - began
                    figures.append(
                        Figure(
                            f"batch push, applied by the reconciler, {processes} process(es)",
                            total / applied_seconds,
                            "assets/s",
                            float("nan"),
                            float("nan"),
                            note=f"{total:,} assets in {applied_seconds:.1f} s",
                        )
                    )
            finally:
                system.stop_all()
                asyncio.run(_drop(database_url))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
        subprocess.run(
            ["psql", ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
        )
    print(
        f"\ningest-api benchmark: {args.connections} connections, {args.seconds:g} s per figure, "
        f"batch {args.batch} assets x {args.batch_connections} connections\n"
    )
    print("| what | rate | p50 ms | p99 ms | ratio to its ceiling | note |")
    print("|---|---|---|---|---|---|")
    for row in figures:
        print(row.row())


async def _drop(database_url: str) -> None:
    """Empty the scratch database between process counts (the next run migrates again)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
