"""Pricing, end to end, on a scratch database and vhost of its own:

    .venv/bin/python -m benchmarks.pricing [--seconds 60] [--assets 10000]
        [--ticks-per-message 1000] [--publishers 4] [--subscribers 50] [--rate 1000]
        [--latency-seconds 30] [--ceiling-messages 20000] [--via auto|ingest|broker]

1. ceiling: raw broker publish + consume of 187-byte messages, nothing else done (msgs/s);
2. sustained: ticks pushed as fast as the pushers go for `--seconds` over `--assets` assets,
   `--ticks-per-message` per call, and the rate at which pricing makes them visible (decided and
   committed to the latest table), from the first push to the last tick decided;
3. latency: `--subscribers` stream subscribers each reading every change of the provider while
   ticks are pushed at `--rate` ticks/s; push → SSE p50/p99.

Phases 2 and 3 also print the CPU the pricing process and its own Postgres backends spent per
tick (utime + stime from /proc, benchmarks/cpu.py): on a shared machine a steadier figure to
compare two codes by than the rates. Phase 2 also prints pricing's rate and the cores it used
(its process and backends) while the pushers ran and once alone: whether pushing starves it.
Pushing through ingest-api, the sustained phase also prints ingest-api's and its backends' CPU
per tick while the pushers ran. The load average is printed at the start and the end.

Ticks go through ingest-api's `POST /v1/prices` when it serves it (`--via auto`), otherwise as
multi-tick messages straight to the price exchange — what that endpoint publishes — and the report
says which. Everything shares the machine's cores with the load client: compare runs made on one
machine, in one go.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from dataclasses import dataclass

import aiohttp
from tests.support.system import System
from tests.support.waiting import eventually

from benchmarks.cpu import Cpu, cpu_spent, own_backends_sample
from benchmarks.pricing.ceiling import broker_ceiling
from benchmarks.pricing.load import Pusher, decided, serves_price_batches
from benchmarks.pricing.subscribers import run_subscribers
from benchmarks.scratch import scratch_system
from rwasync.platform.broker import Broker


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] if values else float("nan")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


class CpuMeter:
    """CPU seconds of the pricing process and of its own Postgres backends over a phase (not
    ingest-api's, nor the benchmark's): rates are noisy on a shared machine, CPU per tick less."""

    def __init__(self, pid: int | None, database_url: str) -> None:
        self._pid = pid
        self._database_url = database_url

    async def sample(self) -> dict[str, float]:
        if self._pid is None:
            return {}
        return await own_backends_sample(self._pid, self._database_url)

    async def since(self, before: dict[str, float]) -> Cpu:
        return cpu_spent(before, await self.sample())


def per_tick(cpu: Cpu, ticks: int, service: str = "pricing") -> str:
    """CPU µs per tick: total (the service's process + its backends)."""
    if ticks <= 0:
        return "CPU per tick n/a"
    return (
        f"CPU {cpu.total * 1e6 / ticks:,.0f} µs/tick ({service} {cpu.service * 1e6 / ticks:,.0f}"
        f" + its Postgres backends {cpu.database * 1e6 / ticks:,.0f}; {cpu.total:.1f} CPU s)"
    )


@dataclass(frozen=True)
class Sustained:
    pushed: int
    push_seconds: float
    visible_seconds: float
    decided_while_pushing: float  # ticks pricing decided before the pushers stopped
    cpu: Cpu  # pricing's, from the first push to the last tick decided
    cpu_while_pushing: Cpu  # pricing's, until the pushers stopped
    ingest_cpu: Cpu  # ingest-api's, while it pushed


async def sustained(
    http: aiohttp.ClientSession,
    pusher: Pusher,
    pricing_url: str,
    args: argparse.Namespace,
    meter: CpuMeter,
    ingest_meter: CpuMeter,
) -> Sustained:
    """The push and what pricing did meanwhile and after (whether the pushers, ingest-api and the
    broker leave pricing the CPU it needs: its rate and cores while they push and once alone)."""
    assets = [f"bench-{i}" for i in range(args.assets)]
    per = args.ticks_per_message
    before = await decided(http, pricing_url)
    cpu_before = await meter.sample()
    ingest_before = await ingest_meter.sample()
    pushed = 0
    began = time.perf_counter()
    stop = began + args.seconds

    async def publisher(n: int) -> None:
        nonlocal pushed
        offset = n * per
        while time.perf_counter() < stop:
            batch = [assets[(offset + i) % len(assets)] for i in range(per)]
            offset += per * args.publishers
            await pusher.push(http, pusher.ticks(batch))
            pushed += per

    await asyncio.gather(*(publisher(n) for n in range(args.publishers)))
    push_seconds = time.perf_counter() - began
    ingest_cpu = await ingest_meter.since(ingest_before)
    decided_while_pushing = await decided(http, pricing_url) - before
    cpu_while_pushing = await meter.since(cpu_before)
    await eventually(
        lambda: decided(http, pricing_url),
        lambda count: count - before >= pushed,
        timeout=3600,
        interval=0.05,
        what="every pushed tick decided",
    )
    visible_seconds = time.perf_counter() - began
    cpu = await meter.since(cpu_before)
    return Sustained(
        pushed,
        push_seconds,
        visible_seconds,
        decided_while_pushing,
        cpu,
        cpu_while_pushing,
        ingest_cpu,
    )


def pricing_share(run: Sustained) -> str:
    """Pricing's rate and cores while the pushers ran and once alone, draining what they left."""
    drain_seconds = run.visible_seconds - run.push_seconds
    drained = run.pushed - run.decided_while_pushing
    drain_cpu = run.cpu.total - run.cpu_while_pushing.total
    while_pushing = (
        f"pricing decided {run.decided_while_pushing / run.push_seconds:,.0f} ticks/s on "
        f"{run.cpu_while_pushing.total / run.push_seconds:.2f} cores while the pushers ran"
    )
    if drain_seconds <= 0 or drained <= 0:
        return while_pushing
    return (
        f"{while_pushing}, {drained / drain_seconds:,.0f} ticks/s on "
        f"{drain_cpu / drain_seconds:.2f} cores after ({drained:,.0f} ticks in "
        f"{drain_seconds:.1f} s)"
    )


async def latency(
    http: aiohttp.ClientSession,
    pusher: Pusher,
    stream_url: str,
    args: argparse.Namespace,
    meter: CpuMeter,
) -> tuple[list[float], int, Cpu]:
    """(the latencies, ticks pushed, pricing's CPU from the first push to the last event)."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=run_subscribers, args=(stream_url, args.subscribers, child)
    )
    process.start()
    try:
        assert await asyncio.to_thread(parent.recv) == "ready"
        per_tick = 0.01  # a batch every 10 ms
        per_batch = max(1, round(args.rate * per_tick))
        assets = [f"live-{i}" for i in range(1000)]
        cpu_before = await meter.sample()
        began = time.perf_counter()
        sent = 0
        while time.perf_counter() - began < args.latency_seconds:
            batch = [assets[(sent + i) % len(assets)] for i in range(per_batch)]
            await pusher.push(http, pusher.ticks(batch))
            sent += per_batch
            ahead = began + sent / args.rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        parent.send(time.time() + 3)  # in-flight events still arrive
        latencies: list[float] = await asyncio.to_thread(parent.recv)
        return latencies, sent, await meter.since(cpu_before)
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()


async def run(
    system: System,
    provider: dict[str, str],
    reader: str,
    args: argparse.Namespace,
    pricing_pid: int | None,
    ingest_pid: int | None,
) -> None:
    meter = CpuMeter(pricing_pid, system.database_url)
    ingest_meter = CpuMeter(ingest_pid, system.database_url)
    print(f"load average {load_average()} at the start")
    ceiling = await broker_ceiling(system.amqp_url, args.ceiling_messages)
    print(f"ceiling   raw broker publish+consume, 187-byte messages: {ceiling:,.0f} msgs/s")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        via = args.via
        if via == "auto":
            via = (
                "ingest" if await serves_price_batches(http, system.url("ingest-api")) else "broker"
            )
        broker = None
        if via == "broker":
            broker = Broker(system.amqp_url, name="bench-pusher")
            broker.start()
            await broker.wait_ready(30)
        pusher = Pusher(
            provider["provider_id"], provider["token"], system.url("ingest-api"), broker
        )
        print(f"pushing via {pusher.mode}")
        try:
            # Latency first, while the change log is quiet; then the sustained push.
            stream = (
                f"{system.url('pricing')}/v1/prices/stream?provider_id={provider['provider_id']}"
                f"&access_token={reader}"
            )
            latencies, sent, cpu = await latency(http, pusher, stream, args, meter)
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            print(
                f"latency   push -> SSE at {args.rate:,} ticks/s, {args.subscribers} subscribers, "
                f"{len(latencies):,} events: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
                "(target p99 < 100 ms)"
            )
            print(f"          {sent:,} ticks pushed, {per_tick(cpu, sent)}")
            run_ = await sustained(http, pusher, system.url("pricing"), args, meter, ingest_meter)
            pushed = run_.pushed
            visible_rate = pushed / run_.visible_seconds
            print(
                f"sustained {pushed:,} ticks over {args.assets:,} assets, "
                f"{args.ticks_per_message} per call, {args.publishers} pushers: pushed "
                f"{pushed / run_.push_seconds:,.0f} ticks/s, visible {visible_rate:,.0f} ticks/s "
                f"end to end (target >= 20,000); {visible_rate / ceiling:.2f} x the ceiling of one "
                "tick per message"
            )
            print(f"          {per_tick(run_.cpu, pushed)}")
            if broker is None:
                print(f"          while pushing: {per_tick(run_.ingest_cpu, pushed, 'ingest-api')}")
            print(f"          {pricing_share(run_)}")
            print(f"load average {load_average()} at the end")
        finally:
            if broker is not None:
                await broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--assets", type=int, default=10000)
    parser.add_argument("--ticks-per-message", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--ceiling-messages", type=int, default=20000)
    parser.add_argument("--via", choices=("auto", "ingest", "broker"), default="auto")
    parser.add_argument("--keep", action="store_true", help="leave the scratch database and vhost")
    parser.add_argument(
        "--pricing-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for pricing (e.g. RWASYNC_PRICING_PREFETCH=16); repeatable",
    )
    args = parser.parse_args()

    settings = dict(item.split("=", 1) for item in args.pricing_env)
    with scratch_system(keep=args.keep, RWASYNC_LOG_LEVEL="WARNING", **settings) as system:
        system.cli("migrate")
        _, provider = system.cli("provider", "create", "Bench Estates", "--json")
        _, reader = system.cli("reader", "create", "Bench Portal", "--json")
        system.start("ingest-api", "pricing")
        pids = {
            name: process.pid if (process := system.services[name].process) else None
            for name in ("pricing", "ingest-api")
        }
        print(f"pricing pid {pids['pricing']}, ingest-api pid {pids['ingest-api']} (for py-spy)")
        asyncio.run(
            run(system, provider, reader["token"], args, pids["pricing"], pids["ingest-api"])
        )


if __name__ == "__main__":
    main()
