"""pricing's consumer in-process, without the broker: where its CPU goes, per tick.

    .venv/bin/python -m benchmarks.pricing.apply_micro [--ticks 1000] [--messages 60]
        [--assets 10000] [--decoder raw|models] [--explain] [--setup SQL]

On a scratch database of its own, messages such as ingest-api publishes for the pricing
benchmark's pushes (`--ticks` distinct assets each, cycling over `--assets`, one `as_of` per
message, their `accepted` receipts written first) are decoded as the consumer decodes them
(`--decoder models`: by the pydantic models) and applied by `PriceApplier`. The first pass over
the assets is a warm-up (every asset then has a latest price, as in a sustained run). It prints
the CPU spent per tick by this process decoding, by this process applying, and by the pool's
Postgres backend (`/proc` utime + stime).
`--explain` also prints `EXPLAIN (ANALYZE, BUFFERS, WAL)` of the apply statement on one more
message: what each of its parts (history, latest, change log, receipts) costs, in time, buffers
and WAL records. `--setup` runs statements on the
scratch database first (an index dropped, a storage setting: what a part costs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from benchmarks.cpu import cpu_seconds
from benchmarks.scratch import ADMIN_DSN
from rwasync.platform.db import Database
from rwasync.platform.migrate import migrate
from rwasync.pricing import queries
from rwasync.pricing.apply import PriceApplier, apply_arguments
from rwasync.schema.event_ids import new_event_ids
from rwasync.schema.events import Arrival, EventSource, EventType
from rwasync.schema.messages import (
    MODEL_DECODER,
    MessageDecoder,
    encode_wire_events,
    price_updated_wire,
)
from rwasync.schema.raw_events import PRICE_QUEUE_DECODER, PriceTick
from rwasync.store import receipts
from rwasync.store.receipts import AcceptedRun

PROVIDER = "prv_0000000000micro"
TRACE = "b" * 32


def message(assets: list[str], sequence: int) -> tuple[bytes, AcceptedRun]:
    """A message of one tick per asset as ingest-api publishes a push, and its receipts."""
    now = datetime.now(UTC)
    arrival = Arrival(PROVIDER, EventSource.BATCH, now, trace_id=TRACE)
    ids = new_event_ids(len(assets))
    events = [
        price_updated_wire(
            arrival,
            event_id=event_id,
            asset_id=asset_id,
            amount=Decimal(f"{100 + (sequence + i) % 997}.{(sequence + i) % 100:02d}"),
            currency="USD",
            as_of=now,
            accepted_at=now + timedelta(microseconds=i),
        )
        for i, (event_id, asset_id) in enumerate(zip(ids, assets, strict=True))
    ]
    run = AcceptedRun(PROVIDER, str(EventType.PRICE_UPDATED), TRACE, now, list(ids), assets)
    return encode_wire_events(events)[1], run


def timed(work: Callable[[], object]) -> tuple[object, float]:
    began = time.process_time()
    result = work()
    return result, time.process_time() - began


DECODERS: dict[str, MessageDecoder[Any]] = {"raw": PRICE_QUEUE_DECODER, "models": MODEL_DECODER}


async def run(
    dsn: str, ticks: int, messages: int, assets: int, explain: bool, setup: str, decoder: str
) -> None:
    await migrate(dsn)
    db = Database(dsn, min_size=1, max_size=1)
    db.start()
    await db.wait_connected(30)
    backend = await db.fetchval("SELECT pg_backend_pid()")
    if setup:
        await db.execute(setup)
    applier = PriceApplier(db)
    names = [f"bench-{i}" for i in range(assets)]
    warm_up = -(-assets // ticks)
    decoding, applying, postgres = [], [], []
    for n in range(warm_up + messages + explain):
        batch = [names[(n * ticks + i) % assets] for i in range(ticks)]
        body, run_ = message(batch, n * ticks)
        await receipts.record_accepted_run(db.pool, run_)
        events, decode_cpu = timed(lambda body=body: list(DECODERS[decoder].decode(body)))  # type: ignore[misc]
        assert isinstance(events, list)
        if n == warm_up + messages:
            await explain_apply(db, events)
            break
        cpu, db_cpu = time.process_time(), cpu_seconds(backend)
        await applier.apply(events)
        if n >= warm_up:
            decoding.append(decode_cpu / ticks * 1e6)
            applying.append((time.process_time() - cpu) / ticks * 1e6)
            postgres.append((cpu_seconds(backend) - db_cpu) / ticks * 1e6)
    undecided = await db.fetchval("SELECT count(*) FROM event_receipts WHERE status = 'accepted'")
    assert undecided == (ticks if explain else 0), undecided
    print(f"{messages} messages of {ticks} ticks over {assets} assets (after {warm_up} warm-up)")
    print("| CPU µs/tick | mean | median | min | max |")
    print("|---|---|---|---|---|")
    for what, values in (
        ("decode (Python)", decoding),
        ("apply (Python)", applying),
        ("its Postgres backend", postgres),
    ):
        print(
            f"| {what} | {statistics.mean(values):.1f} | {statistics.median(values):.1f}"
            f" | {min(values):.1f} | {max(values):.1f} |"
        )
    await db.close()


async def explain_apply(db: Database, events: list[PriceTick]) -> None:
    """EXPLAIN ANALYZE of the apply statement (the function's body) on one message, rolled back."""
    with contextlib.suppress(_RollBack):
        async with db.connection() as conn, conn.transaction():
            await _explain(conn, events)


async def _explain(conn: asyncpg.Connection, events: list[PriceTick]) -> None:
    # Planned as in its function, under the function's settings (migration 0017's).
    config = await conn.fetchval(
        "SELECT proconfig FROM pg_proc WHERE proname = 'price_apply_tick_batch'"
    )
    for setting in config or ():
        await conn.execute("SELECT set_config($1, $2, true)", *setting.split("=", 1))
    rows = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) " + queries.APPLY_TICKS,
        *apply_arguments(events, []),
    )
    print("\n".join(r[0] for r in rows))
    raise _RollBack


class _RollBack(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--decoder", choices=DECODERS, default="raw", help="pricing's (raw) or the models"
    )
    parser.add_argument(
        "--setup",
        default="",
        metavar="SQL",
        help="run on the scratch database first (to try a setting)",
    )
    args = parser.parse_args()
    name = f"bench_apply_{uuid.uuid4().hex[:8]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"

    async def admin(statement: str) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(statement)
        await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(
            run(
                dsn,
                args.ticks,
                args.messages,
                args.assets,
                args.explain,
                args.setup,
                args.decoder,
            )
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
