"""Feed sources and runs as operators (CLI) and providers (the feed API) manage them: register or
replace a source, list sources and runs with cursors, request a run, read a run, decide a held
run. Every operation can be scoped to one provider: another provider's feed or run is then
`FeedNotFound` / `RunNotFound`, exactly like one that does not exist.

The feed poller owns the work (fetch, compare, publish); these statements only record requests,
and it picks them up within a second (LISTEN/NOTIFY, with polling as the fallback). Errors name
the field (`FeedSettingInvalid.pointer`), so an HTTP layer only maps them: `FeedSettingInvalid`
→ 422, `FeedNotFound`/`RunNotFound` → 404, `FeedIdTaken`/`RunNotDecidable` → 409.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal

import asyncpg
import orjson

from rwasync.feeds.auth import FeedSecrets
from rwasync.feeds.schedule import Schedule
from rwasync.feeds.snapshot import Counts
from rwasync.schema.feeds import FeedSettingInvalid, ReasonCode, RunStatus
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store.feed_settings import FEED_ID_PATTERN, FeedSettings, feed_id_rule_broken
from rwasync.store.tenants import new_id

# The channel on which a new request wakes the pollers.
FEED_WAKEUP_CHANNEL: Final = "rwasync_feed_runs"
MAX_PAGE: Final = 500


class RunNotDecidable(Exception):
    """A run that is not held, already approved, or (to approve) superseded by a later run; the
    message says which, in the same words to an operator (CLI) and a provider (feed API)."""


class FeedNotFound(Exception):
    """No such feed (for this provider)."""

    def __init__(self, feed_id: str) -> None:
        super().__init__(f"unknown feed {feed_id!r}")
        self.feed_id = feed_id


class RunNotFound(Exception):
    """No such run (of this feed, for this provider)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"unknown run {run_id!r}")
        self.run_id = run_id


class FeedIdTaken(Exception):
    """Another provider already uses this feed id."""


def _ts(value: datetime | None) -> str | None:
    return timestamp_text(value) if value is not None else None


def _interval_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def feed_object(row: asyncpg.Record) -> dict[str, Any]:
    """A feed as providers and operators read it: never its secret, and no next run while it is
    disabled (its schedule queues none)."""
    interval = row["interval_seconds"]
    return {
        "feed_id": row["feed_id"],
        "provider_id": row["provider_id"],
        "url": row["url"],
        "format": row["format"],
        "schedule": row["cron"] or (_interval_text(interval) if interval else None),
        "interval_seconds": interval,
        "cron": row["cron"],
        "auth": row["auth"] or {"type": "none"},
        "deletion_threshold": {
            "percent": float(row["deletion_threshold_percent"]),
            "min_count": row["deletion_threshold_min_count"],
        },
        "enabled": row["enabled"],
        # A row an earlier release disabled may still hold the time it would have run at.
        "next_run_at": _ts(row["next_run_at"]) if row["enabled"] else None,
        "created_at": _ts(row["created_at"]),
        "updated_at": _ts(row["updated_at"]),
    }


_NO_COUNTS: Final = Counts().as_dict()


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
        # Runs recorded before `stale` was counted lack it: 0, in its place among the others.
        "counts": {**_NO_COUNTS, **row["counts"]},
        "errors": row["errors"],
    }
    if row["reason"] is not None:
        run["reason"] = row["reason"]
        run["reason_code"] = row["reason_code"]
    if row["status"] == "held" and row["decision"] == "approve":
        # Approved, not yet applied: it read `held` alone, as if the approval had been lost.
        run["approved"] = True
    return run


# A cursor names its listing, so that one listing's cursor given to another is refused rather
# than read as a position there (a page of feeds' cursor gave an empty page of runs).
PagedListing = Literal["feeds", "runs"]


def _cursor(listing: PagedListing, moment: datetime, key: str) -> str:
    raw = orjson.dumps([listing, timestamp_text(moment), key])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _after(cursor: str | None, listing: PagedListing) -> tuple[datetime | None, str | None]:
    if cursor is None:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, moment, key = orjson.loads(raw)
        after = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        # the key is the page's last feed or run id: one no feed or run can have is not ours
        if (
            kind != listing
            or after.tzinfo is None
            or not isinstance(key, str)
            or FEED_ID_PATTERN.fullmatch(key) is None
        ):
            raise ValueError(cursor)
        # in UTC, as stored: an offset can carry year 1 or 9999 out of range (OverflowError)
        return after.astimezone(UTC), key
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise FeedSettingInvalid("/cursor", "is not a cursor this listing returned") from None


def _page(
    rows: list[asyncpg.Record],
    limit: int,
    render: Callable[[asyncpg.Record], dict[str, Any]],
    listing: PagedListing,
    key: tuple[str, str],
) -> dict[str, Any]:
    """A page of `limit` items (one more row was fetched to know whether another page follows)."""
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return {
        "items": [render(row) for row in page],
        "next_cursor": _cursor(listing, last[key[0]], last[key[1]]) if last is not None else None,
    }


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise FeedSettingInvalid("/limit", f"must be 1-{MAX_PAGE}")
    return limit


# --- statements ---------------------------------------------------------------------------

PROVIDER_EXISTS: Final = "SELECT 1 FROM providers WHERE provider_id = $1"

# Columns $3.. of a registration: url, format, interval, cron, auth, sealed secret, threshold
# percent and count, enabled, next run.
INSERT_FEED: Final = """
INSERT INTO feed_sources (feed_id, provider_id, url, format, interval_seconds, cron, auth,
                          auth_secret, deletion_threshold_percent, deletion_threshold_min_count,
                          enabled, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING *
"""

FEED_FOR_UPDATE: Final = "SELECT * FROM feed_sources WHERE feed_id = $1 FOR UPDATE"

REPLACE_FEED: Final = """
UPDATE feed_sources
SET url = $3, format = $4, interval_seconds = $5, cron = $6, auth = $7, auth_secret = $8,
    deletion_threshold_percent = $9, deletion_threshold_min_count = $10, enabled = $11,
    next_run_at = $12, updated_at = now()
WHERE feed_id = $1 AND provider_id = $2
RETURNING *
"""

# Turn a feed's schedule on or off (the operator's `feed enable|disable`), with its next run:
# none while off, soon once back on (`next_run_at`).
SET_FEED_ENABLED: Final = """
UPDATE feed_sources SET enabled = $2, next_run_at = $3, updated_at = now()
WHERE feed_id = $1
RETURNING *
"""

LIST_FEEDS: Final = """
SELECT * FROM feed_sources
WHERE ($1::text IS NULL OR provider_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, feed_id) > ($2, $3))
ORDER BY created_at, feed_id
LIMIT $4
"""

GET_FEED: Final = """
SELECT * FROM feed_sources WHERE feed_id = $1 AND ($2::text IS NULL OR provider_id = $2)
"""

REQUEST_RUN: Final = """
INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger)
VALUES ($1, $2, $3, 'queued', 'manual')
"""

WAKE_POLLERS: Final = "SELECT pg_notify($1, $2)"

GET_RUN: Final = """
SELECT * FROM feed_runs
WHERE run_id = $1 AND ($2::text IS NULL OR feed_id = $2) AND ($3::text IS NULL OR provider_id = $3)
"""

LIST_RUNS: Final = """
SELECT * FROM feed_runs
WHERE feed_id = $1
  AND ($2::timestamptz IS NULL OR (requested_at, run_id) < ($2, $3))
ORDER BY requested_at DESC, run_id DESC
LIMIT $4
"""

# The feed's latest `ok` run that kept its items (`staged_items`): the snapshot that stands for
# the feed, which the next run compares with and copies known items from, which other feeds'
# runs consult and which is kept when older snapshots go. `{feed}` is the feed (a parameter or
# an expression), `{also}` further conditions on the runs (`r`), or none. One probe of the index
# `feed_runs_latest_ok`.
LATEST_OK_RUN: Final = """SELECT r.run_id FROM feed_runs r
WHERE r.feed_id = {feed} AND r.status = 'ok' AND r.staged_items IS NOT NULL{also}
ORDER BY r.finished_at DESC NULLS LAST
LIMIT 1"""

# Whether another enabled feed of the provider lists the stored asset `s` in its latest `ok`
# snapshot (its staged items are kept for the next run's fingerprints): a feed is a full
# snapshot of what *it* lists, so a run never deletes what a sibling feed lists (a provider with
# one feed per region, say). A disabled feed stands for nothing: disable the old feed and the
# new one deletes what only the old one listed. `{provider}` and `{feed}` (NULL for a feed not
# registered yet) are parameters or expressions. The sibling runs are found once per statement
# (an uncorrelated ARRAY: an InitPlan), each sibling's latest by one probe of the index
# `feed_runs_latest_ok` (a DISTINCT ON over the siblings' runs read every run of every feed, the
# whole history), then one index probe per asset it is asked about.
LISTED_BY_ANOTHER_FEED: Final = (
    """EXISTS (
    SELECT 1 FROM feed_run_items o
    WHERE o.asset_id = s.asset_id AND o.run_id = ANY (ARRAY(
        SELECT l.run_id
        FROM feed_sources f CROSS JOIN LATERAL ("""
    + LATEST_OK_RUN.format(feed="f.feed_id", also="")
    + """) l
        WHERE f.provider_id = {provider} AND f.enabled AND f.feed_id IS DISTINCT FROM {feed})))"""
)

# Whether a later run of the feed than run `r` read a snapshot: it got as far as comparing
# (whatever it ended as: ok, held, rejected, or failed while publishing), or found the body
# unchanged (not_modified). Applying `r`'s older snapshot then would undo the newer one (delete
# what it lists), so `r` can no longer be approved (only rejected), nor applied if approved
# before.
_READ_LATER: Final = """l.feed_id = r.feed_id
      AND (l.requested_at, l.run_id) > (r.requested_at, r.run_id)
      AND (l.compared_at IS NOT NULL OR l.status = 'not_modified')"""
SUPERSEDED: Final = f"EXISTS (SELECT 1 FROM feed_runs l WHERE {_READ_LATER})"

# The run, locked, and the latest later run that superseded it (`_READ_LATER`), if one did: a
# refusal names it, and whether it can be decided instead (nothing later superseded *it*). A
# rejection does not make an older held run approvable again: the rejected run was compared.
RUN_FOR_DECISION: Final = f"""
SELECT r.run_id, r.status, r.decision, l.run_id AS superseded_by,
       l.compared_at IS NOT NULL AS later_compared,
       l.status = 'held' AND l.decision IS NULL AS later_decidable,
       (SELECT h.run_id FROM feed_runs h
        WHERE h.feed_id = r.feed_id AND h.status = 'held'
          AND (h.requested_at, h.run_id) > (r.requested_at, r.run_id)
        ORDER BY h.requested_at DESC, h.run_id DESC
        LIMIT 1) AS later_held
FROM feed_runs r
LEFT JOIN LATERAL (
    SELECT l.run_id, l.status, l.decision, l.compared_at FROM feed_runs l
    WHERE {_READ_LATER}
    ORDER BY l.requested_at DESC, l.run_id DESC
    LIMIT 1) l ON true
WHERE r.run_id = $1 AND ($2::text IS NULL OR r.feed_id = $2)
  AND ($3::text IS NULL OR r.provider_id = $3)
FOR UPDATE OF r
"""

REJECT_RUN: Final = """
UPDATE feed_runs SET status = 'rejected', reason = $3, reason_code = $2, finished_at = now()
WHERE run_id = $1
"""

# A rejected run's snapshot is never applied: drop it.
FORGET_REJECTED_ITEMS: Final = "DELETE FROM feed_run_items WHERE run_id = $1"

APPROVE_RUN: Final = "UPDATE feed_runs SET decision = 'approve' WHERE run_id = $1"

APPROVAL_PENDING: Final = "SELECT decision IS NOT NULL FROM feed_runs WHERE run_id = $1"


# --- operations ---------------------------------------------------------------------------


def _registration(
    settings: FeedSettings, secrets: FeedSecrets, next_run: datetime | None
) -> tuple[Any, ...]:
    schedule = settings.schedule
    return (
        settings.url,
        str(settings.format),
        schedule.interval_seconds,
        schedule.cron,
        settings.auth.public() if settings.auth.secret is not None else None,
        secrets.seal(settings.auth),
        settings.threshold.percent,
        settings.threshold.min_count,
        settings.enabled,
        next_run,
    )


def next_run_at(
    schedule: Schedule, enabled: bool, before: asyncpg.Record | None
) -> datetime | None:
    """When the schedule next queues a run of a feed that is now `schedule` and `enabled`, and
    was `before` (None: a new feed). None while disabled (nothing will run it) or manual only.
    A feed first runs one interval (or at its next cron time) after it is added; one put back on
    its schedule runs once soon (`Schedule.resume`), whatever time its schedule stood at when
    it was disabled; a new schedule counts from now; an unchanged one keeps its next run, so
    that registering the same settings again never puts the next run off."""
    if not enabled:
        return None
    now = utc_now()
    if before is None:
        return schedule.next_run(now)
    if not before["enabled"]:
        return schedule.resume(now)
    if Schedule(before["interval_seconds"], before["cron"]) != schedule:
        return schedule.next_run(now)
    kept: datetime | None = before["next_run_at"]
    return kept if kept is not None else schedule.next_run(now)


async def add_feed(
    conn: asyncpg.Connection,
    *,
    provider_id: str,
    settings: FeedSettings,
    secrets: FeedSecrets,
) -> dict[str, Any]:
    """Register a feed under a generated id (the operator CLI)."""
    if await conn.fetchval(PROVIDER_EXISTS, provider_id) is None:
        raise FeedSettingInvalid("/provider_id", f"unknown provider {provider_id!r}")
    next_run = next_run_at(settings.schedule, settings.enabled, None)
    row = await conn.fetchrow(
        INSERT_FEED, new_id("feed"), provider_id, *_registration(settings, secrets, next_run)
    )
    assert row is not None
    return feed_object(row)


async def put_feed(
    conn: asyncpg.Connection,
    *,
    provider_id: str,
    feed_id: str,
    settings: FeedSettings,
    secrets: FeedSecrets,
) -> tuple[dict[str, Any], bool]:
    """Create or replace the provider's feed `feed_id`; returns the feed and whether it was
    created. A replacement keeps the feed's runs; its next run follows `next_run_at`."""
    if (broken := feed_id_rule_broken(feed_id, new=False)) is not None:
        raise FeedSettingInvalid("/feed_id", broken)
    async with conn.transaction():
        existing = await conn.fetchrow(FEED_FOR_UPDATE, feed_id)
        if existing is not None and existing["provider_id"] != provider_id:
            raise FeedIdTaken(f"feed id {feed_id!r} is already in use; choose another")
        if existing is None and (broken := feed_id_rule_broken(feed_id)) is not None:
            raise FeedSettingInvalid("/feed_id", broken)
        next_run = next_run_at(settings.schedule, settings.enabled, existing)
        values = _registration(settings, secrets, next_run)
        if existing is None:
            row = await conn.fetchrow(INSERT_FEED, feed_id, provider_id, *values)
            created = True
        else:
            row = await conn.fetchrow(REPLACE_FEED, feed_id, provider_id, *values)
            created = False
    assert row is not None
    return feed_object(row), created


async def set_feed_enabled(conn: asyncpg.Connection, feed_id: str, enabled: bool) -> dict[str, Any]:
    """Put a feed on or off its schedule (the provider's `PUT` with `enabled` does the same: a
    feed put back on runs once soon, `next_run_at`); a disabled feed also stops counting for its
    siblings' deletions (`LISTED_BY_ANOTHER_FEED`)."""
    async with conn.transaction():
        existing = await conn.fetchrow(FEED_FOR_UPDATE, feed_id)
        if existing is None:
            raise FeedNotFound(feed_id)
        schedule = Schedule(existing["interval_seconds"], existing["cron"])
        next_run = next_run_at(schedule, enabled, existing)
        row = await conn.fetchrow(SET_FEED_ENABLED, feed_id, enabled, next_run)
    assert row is not None
    return feed_object(row)


async def get_feed(
    conn: asyncpg.Connection, feed_id: str, *, provider_id: str | None = None
) -> dict[str, Any]:
    row = await conn.fetchrow(GET_FEED, feed_id, provider_id)
    if row is None:
        raise FeedNotFound(feed_id)
    return feed_object(row)


async def list_feeds(
    conn: asyncpg.Connection,
    provider_id: str | None = None,
    *,
    cursor: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """`{"items": [feed...], "next_cursor"}`, oldest first."""
    after, key = _after(cursor, "feeds")
    rows = await conn.fetch(LIST_FEEDS, provider_id, after, key, _limit(limit) + 1)
    return _page(rows, limit, feed_object, "feeds", ("created_at", "feed_id"))


async def request_run(
    conn: asyncpg.Connection, feed_id: str, *, provider_id: str | None = None
) -> str:
    """Queue a run of the feed now (it starts within seconds); returns its run id."""
    feed = await conn.fetchrow(GET_FEED, feed_id, provider_id)
    if feed is None:
        raise FeedNotFound(feed_id)
    run_id = new_id("run")
    async with conn.transaction():
        await conn.execute(REQUEST_RUN, run_id, feed_id, feed["provider_id"])
        await conn.execute(WAKE_POLLERS, FEED_WAKEUP_CHANNEL, run_id)
    return run_id


async def get_run(
    conn: asyncpg.Connection,
    run_id: str,
    *,
    feed_id: str | None = None,
    provider_id: str | None = None,
) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET_RUN, run_id, feed_id, provider_id)
    return run_object(row) if row is not None else None


async def list_runs(
    conn: asyncpg.Connection,
    feed_id: str,
    *,
    provider_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """`{"items": [run...], "next_cursor"}`, newest first."""
    if await conn.fetchrow(GET_FEED, feed_id, provider_id) is None:
        raise FeedNotFound(feed_id)
    before, key = _after(cursor, "runs")
    rows = await conn.fetch(LIST_RUNS, feed_id, before, key, _limit(limit) + 1)
    return _page(rows, limit, run_object, "runs", ("requested_at", "run_id"))


async def approval_pending(conn: asyncpg.Connection, run_id: str) -> bool:
    """An operator approved this held run and the poller has not applied it yet."""
    return bool(await conn.fetchval(APPROVAL_PENDING, run_id))


async def decide_run(
    conn: asyncpg.Connection,
    run_id: str,
    decision: Literal["approve", "reject"],
    *,
    feed_id: str | None = None,
    provider_id: str | None = None,
) -> None:
    """Approve or reject a held run (approval is applied by the poller). Only the feed's latest
    held run may be decided; to be approved, no later run may have superseded it either (it
    would undo the newer snapshot); an approved one waits for the poller: RunNotDecidable,
    saying why."""
    async with conn.transaction():
        row = await conn.fetchrow(RUN_FOR_DECISION, run_id, feed_id, provider_id)
        if row is None:
            raise RunNotFound(run_id)
        refusal = _refusal(row, decision)
        if refusal is not None:
            raise RunNotDecidable(refusal)
        if decision == "reject":
            # The provider over its API (scoped to it), else an operator with the CLI; the
            # reason code stays `rejected_by_operator` for both, as the API has always said.
            who = "the provider" if provider_id is not None else "an operator"
            await conn.execute(
                REJECT_RUN, run_id, ReasonCode.REJECTED_BY_OPERATOR, f"rejected by {who}"
            )
            await conn.execute(FORGET_REJECTED_ITEMS, run_id)
        else:
            await conn.execute(APPROVE_RUN, run_id)
            await conn.execute(WAKE_POLLERS, FEED_WAKEUP_CHANNEL, run_id)


def _refusal(row: asyncpg.Record, decision: Literal["approve", "reject"]) -> str | None:
    """Why the run cannot take this decision (None: it can). Rejecting a superseded held run is
    allowed while it is the feed's latest held run (it applies nothing and only clears it away);
    with a later held run, only that one may be decided, as the contract says (it was rejected
    all the same: newcomer trial), and once that one is decided, this one is the latest again.
    Rejecting an approved one is refused: the poller may be applying it already."""
    run_id, later = row["run_id"], row["superseded_by"]
    if row["status"] != RunStatus.HELD:
        return f"run {run_id} is {row['status']}: only a held run can be decided"
    if row["decision"] is not None:
        if later is not None:
            return (
                f"run {run_id} is already approved, but run {later} superseded it: the poller "
                "ends it failed (superseded) without applying it"
            )
        return f"run {run_id} is already approved; the poller applies it shortly"
    if decision == "approve" and later is not None:
        read = "read the feed again" if row["later_compared"] else "found the feed unchanged"
        advice = (
            "approve that one or trigger a new run"
            if row["later_decidable"]
            else "trigger a new run"
        )
        return f"run {run_id} was superseded by run {later}, which {read}; {advice}"
    if decision == "reject" and row["later_held"] is not None:
        return (
            f"run {run_id} is not the feed's latest held run: run {row['later_held']} is; "
            "decide that one first"
        )
    return None
