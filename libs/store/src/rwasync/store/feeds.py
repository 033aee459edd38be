"""The operator's side of feeds: add a source, request a run, read runs, decide a held run.

The feed poller owns the work (fetch, compare, publish); these statements only record requests
for it, and it picks them up within a second (LISTEN/NOTIFY, with polling as the fallback).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from rwasync.platform.credentials import new_id
from rwasync.platform.netguard import AddressPolicy, AddressRefused
from rwasync.schema.timestamps import timestamp_text

FEED_WAKEUP_CHANNEL = "rwasync_feed_runs"
SUPPORTED_FORMATS = ("json",)
FINISHED_STATUSES = frozenset({"ok", "not_modified", "held", "failed", "rejected"})

_INTERVAL = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class FeedRequestInvalid(Exception):
    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer}: {message}")
        self.pointer = pointer
        self.message = message


class RunNotDecidable(Exception):
    """Only a feed's latest held run can be approved or rejected."""


def parse_interval(text: str) -> int:
    match = _INTERVAL.match(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise FeedRequestInvalid(
            "/schedule", f"invalid interval {text!r}: use e.g. 90s, 15m, 24h, 1d"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def check_feed_url(url: str, policy: AddressPolicy) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FeedRequestInvalid("/url", "must be an absolute http or https URL")
    if len(url) > 2000:
        raise FeedRequestInvalid("/url", "must be at most 2000 characters")
    try:
        policy.check_host_literal(parts.hostname)
    except AddressRefused as exc:
        raise FeedRequestInvalid("/url", str(exc)) from exc
    return url


def check_format(fmt: str) -> str:
    if fmt not in SUPPORTED_FORMATS:
        raise FeedRequestInvalid(
            "/format",
            f"format {fmt!r} is not supported yet; supported: {', '.join(SUPPORTED_FORMATS)}",
        )
    return fmt


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
    """A feed run as API.md "Feeds" describes it."""
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


async def add_feed(
    conn: asyncpg.Connection,
    *,
    provider_id: str,
    url: str,
    fmt: str,
    interval_seconds: int | None,
    policy: AddressPolicy,
    deletion_threshold_percent: float = 20.0,
    deletion_threshold_min_count: int = 5,
) -> dict[str, Any]:
    check_feed_url(url, policy)
    check_format(fmt)
    if await conn.fetchval("SELECT 1 FROM providers WHERE provider_id = $1", provider_id) is None:
        raise FeedRequestInvalid("/provider_id", f"unknown provider {provider_id!r}")
    row = await conn.fetchrow(
        """INSERT INTO feed_sources (feed_id, provider_id, url, format, interval_seconds,
                                     deletion_threshold_percent, deletion_threshold_min_count,
                                     next_run_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7,
                   -- first scheduled run one interval after adding, with up to 10 % jitter
                   CASE WHEN $5::int IS NULL THEN NULL
                        ELSE now() + make_interval(secs => $5 * (1 + random() * 0.1)) END)
           RETURNING *""",
        new_id("feed"),
        provider_id,
        url,
        fmt,
        interval_seconds,
        deletion_threshold_percent,
        deletion_threshold_min_count,
    )
    assert row is not None
    return feed_object(row)


async def list_feeds(
    conn: asyncpg.Connection, provider_id: str | None = None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM feed_sources WHERE $1::text IS NULL OR provider_id = $1 ORDER BY created_at",
        provider_id,
    )
    return [feed_object(r) for r in rows]


async def request_run(conn: asyncpg.Connection, feed_id: str) -> str:
    feed = await conn.fetchrow("SELECT provider_id FROM feed_sources WHERE feed_id = $1", feed_id)
    if feed is None:
        raise FeedRequestInvalid("/feed_id", f"unknown feed {feed_id!r}")
    run_id = new_id("run")
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger)
               VALUES ($1, $2, $3, 'queued', 'manual')""",
            run_id,
            feed_id,
            feed["provider_id"],
        )
        await conn.execute("SELECT pg_notify($1, $2)", FEED_WAKEUP_CHANNEL, run_id)
    return run_id


async def get_run(conn: asyncpg.Connection, run_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM feed_runs WHERE run_id = $1", run_id)
    return run_object(row) if row is not None else None


async def list_runs(
    conn: asyncpg.Connection, feed_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM feed_runs WHERE feed_id = $1 ORDER BY requested_at DESC, run_id LIMIT $2",
        feed_id,
        limit,
    )
    return [run_object(r) for r in rows]


async def decide_run(conn: asyncpg.Connection, run_id: str, decision: str) -> None:
    """Record an operator's approve/reject of the feed's latest held run."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT r.run_id, r.status, r.decision,
                      r.run_id = (SELECT h.run_id FROM feed_runs h
                                  WHERE h.feed_id = r.feed_id AND h.status = 'held'
                                  ORDER BY h.requested_at DESC LIMIT 1) AS latest_held
               FROM feed_runs r WHERE r.run_id = $1 FOR UPDATE""",
            run_id,
        )
        if row is None:
            raise FeedRequestInvalid("/run_id", f"unknown run {run_id!r}")
        if row["status"] != "held" or not row["latest_held"] or row["decision"] is not None:
            raise RunNotDecidable(
                f"run {run_id} is {row['status']}: only a feed's latest held run can be decided"
            )
        if decision == "reject":
            await conn.execute(
                """UPDATE feed_runs SET status = 'rejected', reason = 'rejected by an operator',
                          reason_code = 'rejected_by_operator', finished_at = now(),
                          held_body = NULL
                   WHERE run_id = $1""",
                run_id,
            )
        else:
            await conn.execute(
                "UPDATE feed_runs SET decision = 'approve' WHERE run_id = $1", run_id
            )
            await conn.execute("SELECT pg_notify($1, $2)", FEED_WAKEUP_CHANNEL, run_id)
