"""Baseline: single-asset PUTs through the real ingest-api (confirm before 202) with the
reconciler applying them, on a scratch database and vhost of their own.

    .venv/bin/python -m benchmarks.put_asset [--connections 32] [--seconds 10]

Prints requests/s and latency percentiles. The load client is Python on the same machine, so
it competes with the services for the two cores: compare runs made on one machine, in one go.
(The ingest issue brings the wrk-based benchmark with the bare-aiohttp and raw-publish
baselines; this is the foundation's yardstick.)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from benchmarks.scratch import scratch_system


async def drive(url: str, token: str, connections: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                doc = {
                    "id": f"bench-{n}-{i % 50}",
                    "updated_at": "2026-11-01T00:00:00Z",
                    "status": "active",
                    "name": f"{i} Bench St, Detroit, MI",
                }
                began = time.perf_counter()
                async with http.put(f"{url}/v1/assets/{doc['id']}", json=doc, headers=headers) as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"PUT answered {r.status}")
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(client(n) for n in range(connections)))
    return latencies


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with scratch_system() as system:
        system.cli("migrate")
        _, provider = system.cli("provider", "create", "Bench Estates", "--json")
        system.start("ingest-api", "reconciler")
        began = time.monotonic()
        latencies = asyncio.run(
            drive(system.url("ingest-api"), provider["token"], args.connections, args.seconds)
        )
        elapsed = time.monotonic() - began
    latencies.sort()
    print(
        f"PUT /v1/assets/{{id}}: {args.connections} connections, {elapsed:.1f} s, "
        f"{len(latencies)} requests, {len(latencies) / elapsed:.0f} req/s, "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
