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
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from tests.support.system import System

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


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

    name = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
    )
    system = System(
        f"postgresql://postgres@127.0.0.1:5432/{name}",
        f"amqp://guest:guest@127.0.0.1:5672/{name}",
        Path(tempfile.mkdtemp(prefix="rwasync-bench-")),
    )
    try:
        system.cli("migrate")
        _, provider = system.cli("provider", "create", "Bench Estates", "--json")
        system.start("ingest-api", "reconciler")
        began = time.monotonic()
        latencies = asyncio.run(
            drive(system.url("ingest-api"), provider["token"], args.connections, args.seconds)
        )
        elapsed = time.monotonic() - began
    finally:
        system.stop_all()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
        subprocess.run(
            ["psql", ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
        )
    latencies.sort()
    print(
        f"PUT /v1/assets/{{id}}: {args.connections} connections, {elapsed:.1f} s, "
        f"{len(latencies)} requests, {len(latencies) / elapsed:.0f} req/s, "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
