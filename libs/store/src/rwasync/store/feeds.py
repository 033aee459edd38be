"""Requests about feeds, made by an operator (CLI) or a provider (feed API) and carried out by the
poller: register a source, request a run, read runs, decide a held run.

The feed poller owns the work (fetch, compare, publish); these statements only record requests,
and it picks them up within a second (LISTEN/NOTIFY, with polling as the fallback). The rules a
registration must pass are `rwasync.schema.feeds`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.feeds import (
    DEFAULT_DELETION_THRESHOLD,
    DeletionThreshold,
    FeedSettingInvalid,
    ReasonCode,
    RunStatus,
    check_feed_url,
    check_format,
)
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.tenants import new_id

# The channel on which a new request wakes the pollers.
FEED_WAKEUP_CHANNEL: Final = "rwasync_feed_runs"


class RunNotDecidable(Exception):
    """Only a feed's latest held run can be approved or rejected."""


def _ts(value: datetime | None) -> str | None:
    return timestamp_text(value) if value is not None else None


def feed_object(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "feed_id": row["feed_id"],
        "provider_id": row["provider_id"],
        "url": row["url"],
        "format": row["format"],
        "interval_seconds": row["interval_seconds"],
        "deletion_threshold": {
            "percent": float(row["deletion_threshold_percent"]),
            "min_count": row["deletion_threshold_min_count"],
        },
        "enabled": row["enabled"],
        "next_run_at": _ts(row["next_run_at"]),
        "created_at": _ts(row["created_at"]),
    }


def run_object(row: asyncpg.Record) -> dict[str, Any]:
    """A feed run as providers and operators read it."""
    run: dict[str, Any] = {
        "run_id": row["run_id"],
        "feed_id": row["feed_id"],
        "status": row["status"],
        "trigger": row["trigger"],
        "requested_at": _ts(row["requested_at"]),
        "started_at": _ts(row["started_at"]),
        "finished_at": _ts(row["finished_at"]),
        "snapshot_time": _ts(row["snapshot_time"]),
        "counts": row["counts"],
        "errors": row["errors"],
    }
    if row["reason"] is not None:
        run["reason"] = row["reason"]
        run["reason_code"] = row["reason_code"]
    return run


ADD_FEED: Final = """
INSERT INTO feed_sources (feed_id, provider_id, url, format, interval_seconds,
                          deletion_threshold_percent, deletion_threshold_min_count, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        -- first scheduled run one interval after adding, with up to 10 % jitter
        CASE WHEN $5::int IS NULL THEN NULL
             ELSE now() + make_interval(secs => $5 * (1 + random() * 0.1)) END)
RETURNING *
"""

PROVIDER_EXISTS: Final = "SELECT 1 FROM providers WHERE provider_id = $1"

LIST_FEEDS: Final = """
SELECT * FROM feed_sources WHERE $1::text IS NULL OR provider_id = $1 ORDER BY created_at
"""

FEED_PROVIDER: Final = "SELECT provider_id FROM feed_sources WHERE feed_id = $1"

REQUEST_RUN: Final = """
INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger)
VALUES ($1, $2, $3, 'queued', 'manual')
"""

WAKE_POLLERS: Final = "SELECT pg_notify($1, $2)"

GET_RUN: Final = "SELECT * FROM feed_runs WHERE run_id = $1"

LIST_RUNS: Final = """
SELECT * FROM feed_runs WHERE feed_id = $1 ORDER BY requested_at DESC, run_id LIMIT $2
"""

# The run, locked, and whether it is its feed's latest held run (the only decidable one).
RUN_FOR_DECISION: Final = """
SELECT r.run_id, r.status, r.decision,
       r.run_id = (SELECT h.run_id FROM feed_runs h
                   WHERE h.feed_id = r.feed_id AND h.status = 'held'
                   ORDER BY h.requested_at DESC LIMIT 1) AS latest_held
FROM feed_runs r WHERE r.run_id = $1 FOR UPDATE
"""

REJECT_RUN: Final = """
UPDATE feed_runs SET status = 'rejected', reason = 'rejected by an operator',
       reason_code = $2, finished_at = now(), held_body = NULL
WHERE run_id = $1
"""

APPROVE_RUN: Final = "UPDATE feed_runs SET decision = 'approve' WHERE run_id = $1"

APPROVAL_PENDING: Final = "SELECT decision IS NOT NULL FROM feed_runs WHERE run_id = $1"


async def add_feed(
    conn: asyncpg.Connection,
    *,
    provider_id: str,
    url: str,
    fmt: str,
    interval_seconds: int | None,
    policy: AddressPolicy,
    threshold: DeletionThreshold = DEFAULT_DELETION_THRESHOLD,
) -> dict[str, Any]:
    check_feed_url(url, policy)
    check_format(fmt)
    if await conn.fetchval(PROVIDER_EXISTS, provider_id) is None:
        raise FeedSettingInvalid("/provider_id", f"unknown provider {provider_id!r}")
    row = await conn.fetchrow(
        ADD_FEED,
        new_id("feed"),
        provider_id,
        url,
        fmt,
        interval_seconds,
        threshold.percent,
        threshold.min_count,
    )
    assert row is not None
    return feed_object(row)


async def list_feeds(
    conn: asyncpg.Connection, provider_id: str | None = None
) -> list[dict[str, Any]]:
    return [feed_object(r) for r in await conn.fetch(LIST_FEEDS, provider_id)]


async def request_run(conn: asyncpg.Connection, feed_id: str) -> str:
    feed = await conn.fetchrow(FEED_PROVIDER, feed_id)
    if feed is None:
        raise FeedSettingInvalid("/feed_id", f"unknown feed {feed_id!r}")
    run_id = new_id("run")
    async with conn.transaction():
        await conn.execute(REQUEST_RUN, run_id, feed_id, feed["provider_id"])
        await conn.execute(WAKE_POLLERS, FEED_WAKEUP_CHANNEL, run_id)
    return run_id


async def get_run(conn: asyncpg.Connection, run_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET_RUN, run_id)
    return run_object(row) if row is not None else None


async def list_runs(
    conn: asyncpg.Connection, feed_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    return [run_object(r) for r in await conn.fetch(LIST_RUNS, feed_id, limit)]


async def approval_pending(conn: asyncpg.Connection, run_id: str) -> bool:
    """An operator approved this held run and the poller has not applied it yet."""
    return bool(await conn.fetchval(APPROVAL_PENDING, run_id))


async def decide_run(
    conn: asyncpg.Connection, run_id: str, decision: Literal["approve", "reject"]
) -> None:
    """Record an operator's approve/reject of the feed's latest held run."""
    async with conn.transaction():
        row = await conn.fetchrow(RUN_FOR_DECISION, run_id)
        if row is None:
            raise FeedSettingInvalid("/run_id", f"unknown run {run_id!r}")
        if row["status"] != RunStatus.HELD or not row["latest_held"] or row["decision"] is not None:
            raise RunNotDecidable(
                f"run {run_id} is {row['status']}: only a feed's latest held run can be decided"
            )
        if decision == "reject":
            await conn.execute(REJECT_RUN, run_id, ReasonCode.REJECTED_BY_OPERATOR)
        else:
            await conn.execute(APPROVE_RUN, run_id)
            await conn.execute(WAKE_POLLERS, FEED_WAKEUP_CHANNEL, run_id)
