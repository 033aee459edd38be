"""Who runs what, across replicas: scheduling due feeds, claiming runs under a lease, renewing
and handing back leases, recovering the runs of a replica that died, and recording how a run
ended (only while the run is still this replica's)."""

from __future__ import annotations

import time

import structlog

from rwasync.feed_poller import queries
from rwasync.feed_poller.runs import ClaimedRun, RunOutcome
from rwasync.feeds.schedule import Schedule
from rwasync.platform.db import Database, LockSpace
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)


class RunClaims:
    """The run queue as one replica sees it."""

    def __init__(
        self, db: Database, replica_id: str, lease_seconds: float, runs_per_provider: int
    ) -> None:
        self._db = db
        self.replica_id = replica_id
        self._lease = lease_seconds
        self._per_provider = runs_per_provider
        self._last_renewal = 0.0

    async def schedule_due(self) -> None:
        """Queue a run for every feed whose time has come, and recover expired leases."""
        for row in await self._db.fetch(queries.RECOVER_EXPIRED_RUNS):
            log.warning(
                "feed run lease expired, queued again",
                run_id=row["run_id"],
                feed_id=row["feed_id"],
                claimed_by=row["claimed_by"],  # the replica that stopped renewing it
            )
        async with self._db.connection() as conn, conn.transaction():
            due = await conn.fetch(queries.DUE_FEEDS)
            if not due:
                return
            now = utc_now()
            next_times = [
                Schedule(row["interval_seconds"], row["cron"]).next_run(now) for row in due
            ]
            feed_ids = [row["feed_id"] for row in due]
            await conn.execute(queries.ADVANCE_SCHEDULES, feed_ids, next_times)
            queued = await conn.fetch(
                queries.QUEUE_SCHEDULED_RUNS, feed_ids, [row["provider_id"] for row in due]
            )
        for row in queued:
            log.info("feed run scheduled", run_id=row["run_id"], feed_id=row["feed_id"])

    async def claim(self) -> ClaimedRun | None:
        """The next approved held run, else the next queued run, of a provider under its limit
        of runs in progress (the one with the fewest first, then the oldest request); None when
        there is none."""
        args = (self.replica_id, self._lease, self._per_provider)
        async with self._db.connection() as conn, conn.transaction():
            # One claim at a time across replicas: each statement below then counts the
            # providers' runs in progress with every earlier claim committed (two claims side
            # by side would each see the other's provider under its limit). Claims are short,
            # and their row locks skip rather than wait, so none waits here for long.
            await conn.execute(queries.LOCK_CLAIMS, int(LockSpace.FEED_RUN_CLAIMS))
            row = await conn.fetchrow(queries.CLAIM_APPROVED_RUN, *args)
            if row is not None:
                return ClaimedRun.from_row(row, is_approval=True)
            row = await conn.fetchrow(queries.CLAIM_QUEUED_RUN, *args)
            if row is not None:
                return ClaimedRun.from_row(row, is_approval=False)
        return None

    async def renew(self, run_ids: list[str]) -> set[str]:
        """Keep these runs' leases alive (at most every third of a lease); returns the runs that
        are no longer this replica's (the lease ran out, say while the database was away, and
        the run went back to the queue: another replica may be running it)."""
        now = time.monotonic()
        if not run_ids or now - self._last_renewal < self._lease / 3:
            return set()
        rows = await self._db.fetch(queries.RENEW_LEASES, run_ids, self.replica_id, self._lease)
        self._last_renewal = now
        return set(run_ids) - {row["run_id"] for row in rows}

    async def release(self, run_ids: list[str]) -> None:
        """Hand unfinished runs back at once (on shutdown), rather than when the lease expires."""
        if not run_ids:
            return
        try:
            await self._db.execute(queries.RELEASE_RUNS, run_ids, self.replica_id)
            log.info("unfinished feed runs handed back", run_ids=run_ids)
        except Exception as exc:  # their leases expire and another replica recovers them
            log.warning("could not hand back feed runs", run_ids=run_ids, error=str(exc))

    async def finish(self, claim: ClaimedRun, outcome: RunOutcome) -> bool:
        """Record how the run ended; False when it was no longer ours (the lease was lost)."""
        body = outcome.body
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                queries.FINISH_RUN,
                claim.run_id,
                self.replica_id,
                outcome.status,
                outcome.reason,
                outcome.reason_code,
                outcome.counts.as_dict(),
                outcome.errors,
                outcome.compared,
                outcome.snapshot_time,
                body.byte_count,
                body.decoded_bytes,
                body.sha256,
                body.validators.etag,
                body.validators.last_modified,
                outcome.staged_items,
            )
            if row is None:
                return False
        # Snapshots only this run could still need (or none) are dropped after its ending, in a
        # statement of their own: a failure there (a big delete the database cuts short) left the
        # run unfinished, to be published again, though its events were out. Whatever is left
        # goes with the feed's next ending.
        try:
            await self._db.execute(queries.FORGET_STAGED_ITEMS, claim.feed_id)
        except Exception as exc:  # housekeeping: the run's ending stands
            log.warning("staged items not dropped", feed_id=claim.feed_id, error=str(exc))
        return True
