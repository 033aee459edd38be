"""Beyond one broker: the four services against a 3-node RabbitMQ cluster of private nodes, given
every node's address. Under the soak's load, `kill -9` the node leading the work queues, start it
again, then kill the node that leads them next: every 202 ends applied (or rightly stale), nothing
is applied twice, and the 503 window and recovery time of each kill are printed.

Slow, and heavy (three Erlang VMs): `make test-faults`.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest

from rwasync.schema import topology
from tests.e2e.scenarios import outage_figures, scenario_system, verdict
from tests.e2e.test_flows import bearer
from tests.e2e.test_soak import Load
from tests.support.infra import Infra, unique_name
from tests.support.ledger import Window
from tests.support.private_servers import PrivateRabbit, RabbitCluster
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 8
LOAD_SECONDS = 110.0
# RabbitMQ 3.10 writes a new quorum queue's Raft state lazily: a member killed within seconds of
# the declaration can come back without the queue's leader. The services declare at start.
QUORUM_SETTLE = 12.0
DOWN_FOR = 10.0
# 503s are expected from a kill until this long after the killed node is back.
GRACE = 10.0


async def _leader(cluster: RabbitCluster, queue: str) -> PrivateRabbit:
    found = await eventually(
        lambda: asyncio.to_thread(cluster.leader, queue),
        lambda node: node is not None,
        timeout=60,
        interval=1,
        what=f"a leader for {queue}",
    )
    assert found is not None
    return found


@pytest.mark.timeout(900)
async def test_killing_the_leading_node_twice_loses_and_duplicates_nothing(
    test_infra: Infra, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = await asyncio.to_thread(RabbitCluster.start)
    try:
        async with scenario_system(
            test_infra,
            template_database,
            tmp_path_factory.mktemp("cluster"),
            amqp_url=cluster.amqp_setting(),
        ) as system:
            await asyncio.to_thread(system.start)
            _, provider = await asyncio.to_thread(
                system.cli, "provider", "create", unique_name("Provider"), "--json"
            )
            _, reader = await asyncio.to_thread(
                system.cli, "reader", "create", unique_name("Investor"), "--json"
            )
            await asyncio.sleep(QUORUM_SETTLE)
            seed = random.randrange(2**32)
            notes: list[str] = []
            windows: list[Window] = []
            kills: list[tuple[str, float, float]] = []  # node, killed at, back at
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                load = Load(http, system.url("ingest-api"), bearer(provider), seed, clients=CLIENTS)
                t0 = time.monotonic()
                loading = asyncio.create_task(load.run(LOAD_SECONDS))
                for round_ in range(2):
                    await asyncio.sleep(10 if round_ == 0 else QUORUM_SETTLE)
                    node = await _leader(cluster, topology.RECONCILER_QUEUE)
                    pricing_leader = await _leader(cluster, topology.PRICING_QUEUE)
                    killed_at = time.time()
                    await asyncio.to_thread(node.kill9)
                    notes.append(
                        f"{time.monotonic() - t0:5.1f}s kill -9 {node.name} (leads the reconciler "
                        f"queue; pricing queue led by {pricing_leader.name})"
                    )
                    await asyncio.sleep(DOWN_FOR)
                    new_leader = await _leader(cluster, topology.RECONCILER_QUEUE)
                    notes.append(f"{time.monotonic() - t0:5.1f}s new leader {new_leader.name}")
                    await asyncio.to_thread(node.start)
                    back_at = time.time()
                    notes.append(f"{time.monotonic() - t0:5.1f}s {node.name} back")
                    windows.append(Window(killed_at, back_at + GRACE))
                    kills.append((node.name, killed_at, back_at))
                await loading
            ledger = load.ledger
            result = await verdict("cluster-failover", system, ledger, windows, provider, reader)
            ends = [k[1] for k in kills[1:]] + [time.time()]
            for (name, killed_at, back_at), until in zip(kills, ends, strict=True):
                figures = outage_figures(ledger, killed_at, back_at, until)
                result.extra[f"kill_{name}"] = figures
                notes.append(f"kill of {name}: {figures} (node down {back_at - killed_at:.1f}s)")
            print()
            print(result.line())
            for note in notes:
                print(f"  {note}")
            print(f"  answers: {result.findings.figures['answers']} (seed {seed})")
            if result.findings.total():
                print(system.logs())
            assert result.findings.total() == 0, result.findings.report()
            assert result.extra["undecided"] == 0
    finally:
        await asyncio.to_thread(cluster.destroy)
