"""ingest-api's `POST /v1/prices` in-process, without HTTP or the broker: where its CPU goes, per
tick.

    .venv/bin/python -m benchmarks.pricing.push_micro [--ticks 10000] [--requests 6] [--rejected 0]
        [--distinct-as-of]

On a scratch database of its own, the real handler (`Batches.post_prices` after the caller is
known: body parsed, validated, events built, encoded into broker messages, `accepted` receipts
recorded, answer rendered) runs on request bodies such as the pricing benchmark's pusher sends,
`--rejected` of their ticks invalid. The broker is a stand-in that encodes each message as the
real one does and confirms at once. It prints the CPU spent per tick by this process and by the
pool's Postgres backend (`/proc` utime + stime) for the whole handler, (py-spy shows where it goes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import make_mocked_request

from benchmarks.cpu import cpu_seconds
from benchmarks.scratch import ADMIN_DSN
from rwasync.ingest_api.acceptance import AcceptanceClock, EventPublisher, PublishingLimits
from rwasync.ingest_api.batches import Batches
from rwasync.ingest_api.bodies import BodyLimits
from rwasync.ingest_api.callers import Call
from rwasync.ingest_api.context import Ingest
from rwasync.platform.broker import Broker
from rwasync.platform.db import Database
from rwasync.platform.http import freeze_start_up_objects, tune_garbage_collector
from rwasync.platform.migrate import migrate
from rwasync.schema.events import Arrival, EventSource
from rwasync.store.tenants import ProviderIdentity

PROVIDER = "prv_0000000000micro"


class ConfirmingBroker(Broker):
    """The real broker's publishing (encoding, headers) up to the wire; every message is
    confirmed at once, without a connection."""

    def __init__(self) -> None:
        super().__init__("amqp://guest:guest@127.0.0.1:5672/")
        self.messages = 0

    async def publish_body(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **_: Any
    ) -> None:
        self.messages += 1
        await asyncio.sleep(0)


def bodies(ticks: int, requests: int, rejected: int, distinct_as_of: bool = False) -> list[bytes]:
    """Request bodies as `benchmarks.pricing.load.Pusher` sends them (distinct assets, one as_of
    per request), or with an as_of of its own for every tick."""
    now = datetime.now(UTC)
    out = []
    sequence = 0
    for r in range(requests):
        items: list[dict[str, Any]] = []
        for i in range(ticks):
            sequence += 1
            amount = f"{100 + sequence % 997}.{sequence % 100:02d}"
            as_of = now - timedelta(microseconds=sequence if distinct_as_of else 0)
            items.append(
                {
                    "asset_id": f"asset-{r}-{i}",
                    "amount": amount,
                    "currency": "USD",
                    "as_of": as_of.isoformat(),
                }
            )
        for i in range(rejected):
            items[(i * 7919) % ticks]["currency"] = "XXQ"
        out.append(orjson.dumps({"prices": items}))
    return out


async def _measure(backend: int, work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    cpu, db_cpu = time.process_time(), cpu_seconds(backend)
    await work()
    return time.process_time() - cpu, cpu_seconds(backend) - db_cpu


async def run(
    dsn: str, ticks: int, requests: int, rejected: int, distinct_as_of: bool, gc_mode: str
) -> None:
    await migrate(dsn)
    db = Database(dsn, min_size=1, max_size=1)
    db.start()
    await db.wait_connected(30)
    backend = await db.fetchval("SELECT pg_backend_pid()")
    broker = ConfirmingBroker()
    publisher = EventPublisher(broker, db, PublishingLimits())
    ingest = Ingest(
        db=db,
        callers=None,  # type: ignore[arg-type]
        publisher=publisher,
        clock=AcceptanceClock(),
        idempotency=None,  # type: ignore[arg-type]
        single=BodyLimits(1 << 20, 10),
        batch=BodyLimits(16 << 20, 10),
    )
    batches = Batches(ingest)
    request = make_mocked_request(
        "POST", "/v1/prices", headers={"Content-Type": "application/json"}
    )
    identity = ProviderIdentity(PROVIDER, "key-micro")
    sent = bodies(ticks, requests + 1, rejected, distinct_as_of)

    async def handle(body: bytes) -> None:
        arrival = Arrival(PROVIDER, EventSource.BATCH, datetime.now(UTC), trace_id="a" * 32)
        response = await batches._prices(Call(request, identity, arrival, body))
        assert response.status == 202, response.status

    await handle(sent[0])  # warm up: first statements prepared, lazy imports done
    if gc_mode in ("freeze", "tuned"):
        freeze_start_up_objects()
    if gc_mode == "tuned":
        tune_garbage_collector()
    python, postgres = [], []
    for body in sent[1:]:
        spent = await _measure(backend, lambda body=body: handle(body))  # type: ignore[misc]
        python.append(spent[0] / ticks * 1e6)
        postgres.append(spent[1] / ticks * 1e6)
    stored = await db.fetchval("SELECT count(*) FROM event_receipts")
    assert stored == (requests + 1) * (ticks - rejected), stored
    print(
        f"{requests} requests of {ticks} ticks ({rejected} rejected each,"
        f" {'distinct as_of' if distinct_as_of else 'one as_of'} per request),"
        f" {broker.messages} broker messages"
    )
    print("| CPU µs/tick | median | min | max |")
    print("|---|---|---|---|")
    for what, values in (("ingest-api (Python)", python), ("its Postgres backend", postgres)):
        print(
            f"| {what} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--rejected", type=int, default=0)
    parser.add_argument("--distinct-as-of", action="store_true", help="an as_of per tick")
    parser.add_argument(
        "--gc",
        choices=("default", "freeze", "tuned"),
        default="freeze",
        help="CPython's collector untouched, start-up frozen (as every service leaves it), or"
        " also the consumers' thresholds",
    )
    args = parser.parse_args()
    name = f"bench_push_{uuid.uuid4().hex[:8]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"

    async def admin(statement: str) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(statement)
        await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(
            run(dsn, args.ticks, args.requests, args.rejected, args.distinct_as_of, args.gc)
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
