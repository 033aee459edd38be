"""The reconciler's apply in-process, without the broker: where its CPU goes, per event.

    .venv/bin/python -m benchmarks.reconciler.micro [--events 30000] [--per-message 500]

On a scratch database of its own: the messages' bodies decoded as the reconciler decodes them
(`raw_events.decode_asset_message`; `--models`: pydantic's `decode_message`), applied batch
by batch through `AssetApplier` on one connection (fresh, then the same again: all stale), and
the change feed read back as the relay reads it. For each step it prints the CPU spent per event
by this process and by the connection's Postgres backend (`/proc` utime + stime): a cost other
processes' load on a shared box inflates far less than the wall-clock rates.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from benchmarks.reconciler.__main__ import ADMIN_DSN, RECORD_ACCEPTED, cpu_seconds
from benchmarks.reconciler.workload import build
from rwasync.platform.db import Database, connect
from rwasync.platform.http import freeze_start_up_objects, tune_garbage_collector
from rwasync.platform.migrate import migrate
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.relay import change_messages
from rwasync.schema.messages import decode_message
from rwasync.schema.raw_events import ConsumedEvent, decode_asset_message
from rwasync.store.catalog import START, changes_after


async def _step(
    what: str, events: int, backend: int, work: Callable[[], Awaitable[object]]
) -> None:
    began, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(backend)
    await work()
    python, postgres = time.process_time() - cpu, cpu_seconds(backend) - db_cpu
    print(
        f"| {what} | {time.perf_counter() - began:.2f} | {python / events * 1e6:.1f}"
        f" | {postgres / events * 1e6:.1f} |",
        flush=True,
    )


async def run(dsn: str, events: int, per_message: int, *, models: bool = False) -> None:
    await migrate(dsn)
    admin: asyncpg.Connection = await asyncpg.connect(dsn)
    provider = "prov-micro"
    await admin.execute(
        "INSERT INTO providers (provider_id, name) VALUES ($1, 'Micro') ON CONFLICT DO NOTHING",
        provider,
    )
    w = build(provider, uuid.uuid4().hex[:6], events, per_message)
    await admin.execute(RECORD_ACCEPTED, provider, w.event_ids, w.asset_ids, w.accepted_at)
    await admin.execute("VACUUM ANALYZE event_receipts")
    db = Database(dsn, min_size=1, max_size=1)
    db.start()
    await db.wait_connected(30)
    backend = await db.fetchval("SELECT pg_backend_pid()")
    applier = AssetApplier(db)
    freeze_start_up_objects()  # as the service does
    tune_garbage_collector()
    batches: list[list[ConsumedEvent]] = []

    async def decode() -> None:
        if models:
            batches.extend(list(decode_message(body).events) for body in w.bodies)
        else:
            batches.extend(decode_asset_message(body) for body in w.bodies)

    async def apply() -> None:
        for batch in batches:
            await applier.apply(batch)

    relay_conn = await connect(dsn)  # as the relay connects
    relay_backend = await relay_conn.fetchval("SELECT pg_backend_pid()")

    async def read_feed() -> None:
        position = START
        while True:
            page = await changes_after(relay_conn, position, 2000)
            if not page.items:
                break
            change_messages(page.items, 500)
            position = page.position

    print("| step | seconds | CPU µs/event: Python | CPU µs/event: Postgres |")
    print("|---|---|---|---|")
    await _step("decode", events, backend, decode)
    await _step("apply, fresh", events, backend, apply)
    await _step("change feed read + render", events, relay_backend, read_feed)
    await _step("apply, all stale", events, backend, apply)
    await relay_conn.close()
    await admin.close()
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--per-message", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--models", action="store_true", help="decode with the models (pydantic), as before raw"
    )
    args = parser.parse_args()
    name = f"bench_micro_{uuid.uuid4().hex[:8]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"

    async def create() -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    async def drop() -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    try:
        asyncio.run(run(dsn, args.events, args.per_message, models=args.models))
    finally:
        if not args.keep:
            asyncio.run(drop())
        else:
            print(f"kept {dsn}")


if __name__ == "__main__":
    main()
