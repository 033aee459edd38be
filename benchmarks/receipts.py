"""What the kind of event id costs the receipts ledger once it outgrows memory.

    .venv/bin/python -m benchmarks.receipts [--rows 2000000] [--events 100000] [--rounds 3]

On a scratch database migrated like production, two copies of `event_receipts` (its indexes,
checks and all) are filled with `--rows` decided receipts: one keyed by random (version 4) ids,
as rwasync drew them before, one by the time-ordered ids it draws now (`new_event_ids`). Then,
alternately, `--events` new receipts are recorded in each, 500 a statement as ingest-api does,
and decided, 500 a statement as the consumers do. It prints the Postgres backend's CPU per
receipt (`/proc`, which other load inflates far less than wall time) and the write-ahead log per
receipt, each round starting at a checkpoint as a running system would meet one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from benchmarks.reconciler.__main__ import ADMIN_DSN, cpu_seconds
from rwasync.platform.migrate import migrate
from rwasync.schema.event_ids import new_event_ids

PER_STATEMENT = 500
IdSource = Callable[[int], list[str]]


def random_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


KINDS: dict[str, IdSource] = {"random (v4)": random_ids, "time-ordered (v7)": new_event_ids}

RECORD = """
INSERT INTO {table} (event_id, provider_id, asset_id, type, status, accepted_at, trace_id)
SELECT e, 'prv_bench', 'a1', 'price.updated', 'accepted', $2, 'trace' FROM unnest($1::uuid[]) e
"""
DECIDE = """
UPDATE {table} SET status = 'applied', latest = true, decided_at = now()
WHERE event_id = ANY($1::uuid[]) AND status IS NOT DISTINCT FROM 'accepted'
"""


async def fill(conn: asyncpg.Connection, table: str, ids: IdSource, rows: int) -> None:
    await conn.execute(f"CREATE TABLE {table} (LIKE event_receipts INCLUDING ALL)")
    now = datetime.now(UTC)
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        await conn.copy_records_to_table(
            table,
            records=[(i, "prv_bench", "a1", "price.updated", "applied", now) for i in ids(count)],
            columns=["event_id", "provider_id", "asset_id", "type", "status", "accepted_at"],
        )
    await conn.execute(f"VACUUM ANALYZE {table}")


async def round_of(
    conn: asyncpg.Connection, table: str, ids: IdSource, events: int
) -> tuple[float, float, float]:
    """Postgres CPU µs per receipt recorded, per receipt decided, and WAL bytes per receipt."""
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    await conn.execute("CHECKPOINT")
    wal_before = await conn.fetchval("SELECT pg_current_wal_lsn()")
    drawn: list[list[str]] = []
    for _ in range(0, events, PER_STATEMENT):
        drawn.append(ids(PER_STATEMENT))
        await asyncio.sleep(0)
    began = cpu_seconds(backend)
    for chunk in drawn:
        await conn.execute(RECORD.format(table=table), chunk, datetime.now(UTC))
    recorded = cpu_seconds(backend)
    for chunk in drawn:
        await conn.execute(DECIDE.format(table=table), chunk)
    decided = cpu_seconds(backend)
    wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", wal_before)
    count = len(drawn) * PER_STATEMENT
    return (
        (recorded - began) / count * 1e6,
        (decided - recorded) / count * 1e6,
        float(wal) / count,
    )


async def run(rows: int, events: int, rounds: int) -> None:
    name = f"bench_receipts_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            tables = {kind: f"receipts_{n}" for n, kind in enumerate(KINDS)}
            began = time.perf_counter()
            for kind, source in KINDS.items():
                await fill(conn, tables[kind], source, rows)
            print(
                f"{len(KINDS)} ledgers of {rows} receipts filled in "
                f"{time.perf_counter() - began:.0f} s; {events} receipts a round\n"
            )
            results: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
            for _ in range(rounds):
                for kind, source in KINDS.items():
                    results[kind].append(await round_of(conn, tables[kind], source, events))
            print("| event ids | Postgres CPU µs/receipt: record | decide | WAL bytes/receipt |")
            print("|---|---|---|---|")
            medians = {
                kind: [statistics.median(r[i] for r in rs) for i in range(3)]
                for kind, rs in results.items()
            }
            for kind, (record, decide, wal) in medians.items():
                print(f"| {kind} | {record:.1f} | {decide:.1f} | {wal:,.0f} |")
            (r4, d4, w4), (r7, d7, w7) = medians.values()
            print(
                f"\ntime-ordered / random: record {r7 / r4:.2f} ×, decide {d7 / d4:.2f} ×, "
                f"WAL {w7 / w4:.2f} × (medians of {rounds} alternating rounds)"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.events, args.rounds))


if __name__ == "__main__":
    main()
