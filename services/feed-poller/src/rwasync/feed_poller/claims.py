"""Who runs what, across replicas: scheduling due feeds, claiming runs under a lease, renewing
and handing back leases, recovering the runs of a replica that died, and recording how a run
ended (only while the run is still this replica's)."""

from __future__ import annotations

import time

import structlog

from rwasync.feed_poller import queries
from rwasync.feed_poller.runs import ClaimedRun, RunOutcome
from rwasync.platform.db import Database

log = structlog.get_logger(__name__)


class RunClaims:
    """The run queue as one replica sees it."""

    def __init__(self, db: Database, replica_id: str, lease_seconds: float) -> None:
        self._db = db
        self.replica_id = replica_id
        self._lease = lease_seconds
        self._last_renewal = 0.0

    async def schedule_due(self) -> None:
        """Queue a run for every feed whose time has come, and recover expired leases."""
        for row in await self._db.fetch(queries.RECOVER_EXPIRED_RUNS):
            log.warning(
                "feed run lease expired, queued again", run_id=row["run_id"], feed_id=row["feed_id"]
            )
        for row in await self._db.fetch(queries.SCHEDULE_DUE_FEEDS):
            log.info("feed run scheduled", run_id=row["run_id"], feed_id=row["feed_id"])

    async def claim(self) -> ClaimedRun | None:
        """The next approved held run, else the oldest queued run; None when there is none."""
        row = await self._db.fetchrow(queries.CLAIM_APPROVED_RUN, self.replica_id, self._lease)
        if row is not None:
            return ClaimedRun.from_row(row, is_approval=True)
        row = await self._db.fetchrow(queries.CLAIM_QUEUED_RUN, self.replica_id, self._lease)
        if row is not None:
            return ClaimedRun.from_row(row, is_approval=False)
        return None

    async def renew(self, run_ids: list[str]) -> None:
        """Keep these runs' leases alive (at most every third of a lease)."""
        now = time.monotonic()
        if not run_ids or now - self._last_renewal < self._lease / 3:
            return
        await self._db.execute(queries.RENEW_LEASES, run_ids, self.replica_id, self._lease)
        self._last_renewal = now

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
        row = await self._db.fetchrow(
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
            body.byte_count if body is not None else None,
            body.sha256 if body is not None else None,
            outcome.held_body,
        )
        return row is not None
