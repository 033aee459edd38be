"""Beyond one broker: the four services against a 3-node RabbitMQ cluster of private nodes, given
every node's address. Under the soak's load, `kill -9` the node leading the work queues, start it
again, then kill the node that leads them next: every 202 ends applied (or rightly stale), nothing
is applied twice, and the 503 window and recovery time of each kill are printed.

Slow, and heavy (three Erlang VMs): `make test-faults`.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from rwasync.schema import topology
from tests.e2e.scenarios import Faulting, people_of, run_scenario, scenario_system
from tests.support.infra import Infra
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
            people = await people_of(system)
            await asyncio.sleep(QUORUM_SETTLE)

            async def schedule(f: Faulting) -> None:
                for round_ in range(2):
                    await asyncio.sleep(10 if round_ == 0 else QUORUM_SETTLE)
                    node = await _leader(cluster, topology.RECONCILER_QUEUE)
                    pricing_leader = await _leader(cluster, topology.PRICING_QUEUE)
                    killed_at = time.time()
                    await asyncio.to_thread(node.kill9)
                    f.note(
                        f"kill -9 {node.name} (leads the reconciler queue; the pricing queue "
                        f"led by {pricing_leader.name})"
                    )
                    await asyncio.sleep(DOWN_FOR)
                    f.note(f"new leader {(await _leader(cluster, topology.RECONCILER_QUEUE)).name}")
                    await asyncio.to_thread(node.start)
                    f.note(f"{node.name} back")
                    f.fault(f"kill_{node.name}", killed_at, time.time(), GRACE)

            result = await run_scenario(
                "cluster-failover", system, people, schedule, LOAD_SECONDS, clients=CLIENTS
            )
            assert result.findings.total() == 0, result.findings.report()
            assert result.extra["undecided"] == 0
            assert len(result.extra) >= 4  # both kills happened and were measured
    finally:
        await asyncio.to_thread(cluster.destroy)
