"""The poller's loop: schedule due feeds, claim runs, execute them, record how they ended.

A dedicated Postgres connection LISTENs for the operator's requests (`feed trigger`, `feed
approve`) so a run starts within a second; polling every `poll_interval` is the fallback and also
drives the schedule and the recovery of runs whose replica died. A run: fetch → body digest
(identical to the last `ok` run's: `not_modified`) → parse → compare with the stored state →
held, failed, or publish the events (confirmed) and `ok`. An approved held run is parsed from
its stored body again, compared with the current state without the hold checks and published.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Histogram

from rwasync.feed_poller import queries
from rwasync.feed_poller.fetch import FetchFailed, FetchLimits, fetch_feed
from rwasync.feed_poller.parse import FeedInvalid, ParsedFeed, parse_feed
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feed_poller.snapshot import (
    Counts,
    DeletionThreshold,
    Plan,
    SnapshotInput,
    StoredAsset,
    compare_snapshot,
)
from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database, DatabaseUnavailable, is_transient
from rwasync.platform.feeds import FEED_WAKEUP_CHANNEL
from rwasync.platform.netguard import AddressPolicy
from rwasync.schema import topology
from rwasync.schema.events import (
    AssetDeleted,
    AssetDeletedPayload,
    AssetUpserted,
    AssetUpsertedPayload,
    EventSource,
    message_for,
    new_event_id,
)
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

RUNS = Counter(
    "rwasync_feed_runs_total", "Feed runs finished, by outcome", ["outcome", "reason_code"]
)
EVENTS_PUBLISHED = Counter(
    "rwasync_feed_events_published_total", "Asset events published by feed runs", ["type"]
)
RUN_SECONDS = Histogram(
    "rwasync_feed_run_seconds",
    "Time from claim to the end of a feed run",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800),
)

# Publishes in flight at once for one run: enough to pipeline confirms, bounded in memory.
PUBLISH_WINDOW = 64


@dataclass(frozen=True)
class ClaimedRun:
    run_id: str
    feed_id: str
    provider_id: str
    trigger: str
    started_at: datetime
    url: str
    fmt: str
    threshold: DeletionThreshold
    feed_created_at: datetime
    # This claim applies an operator's approval of a held run, whose body was kept.
    is_approval: bool
    held_body: bytes | None

    @classmethod
    def from_row(cls, row: asyncpg.Record, *, is_approval: bool) -> ClaimedRun:
        return cls(
            run_id=row["run_id"],
            feed_id=row["feed_id"],
            provider_id=row["provider_id"],
            trigger=row["trigger"],
            started_at=row["started_at"],
            url=row["url"],
            fmt=row["format"],
            threshold=DeletionThreshold(
                percent=Decimal(row["deletion_threshold_percent"]),
                min_count=row["deletion_threshold_min_count"],
            ),
            feed_created_at=row["feed_created_at"],
            is_approval=is_approval,
            held_body=row["held_body"],
        )


@dataclass
class RunOutcome:
    """How a run ended, as recorded in `feed_runs`."""

    status: str
    reason: str | None = None
    reason_code: str | None = None
    counts: Counts = field(default_factory=Counts)
    errors: list[dict[str, Any]] = field(default_factory=list)
    compared: bool = False
    snapshot_time: datetime | None = None
    byte_count: int | None = None
    body_sha256: bytes | None = None
    held_body: bytes | None = None


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def fetch_limits(settings: FeedPollerSettings) -> FetchLimits:
    return FetchLimits(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        total_timeout=settings.total_timeout,
        tries=settings.fetch_tries,
        retry_delay=settings.retry_delay,
        max_redirects=settings.max_redirects,
        max_body_bytes=settings.max_body_bytes,
    )


class FeedPoller:
    """Runs feeds for one replica; any number of replicas may share the database."""

    def __init__(
        self,
        settings: FeedPollerSettings,
        db: Database,
        broker: Broker,
        *,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._broker = broker
        self._policy = policy or AddressPolicy.from_setting(settings.feed_allowed_networks)
        self._limits = fetch_limits(settings)
        self.replica_id = settings.replica_id or _default_replica_id()
        self._wakeup = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = 0.0
        self._listening = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name="feed-poller-loop"),
            asyncio.create_task(self._listen_forever(), name="feed-poller-listen"),
        ]

    def is_running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    @property
    def is_listening(self) -> bool:
        return self._listening

    async def stop(self) -> None:
        """Stop claiming, abandon runs in progress and hand them back to the queue at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # Taken first: a cancelled run removes itself from `_active`.
        run_ids = list(self._active)
        running = list(self._active.values())
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if run_ids:
            try:
                await self._db.execute(queries.RELEASE_RUNS, run_ids, self.replica_id)
                log.info("unfinished feed runs handed back", run_ids=run_ids)
            except Exception as exc:  # their leases expire and another replica recovers them
                log.warning("could not hand back feed runs", run_ids=run_ids, error=str(exc))

    # --- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                log.debug("feed poller waiting for the database")
            except Exception as exc:
                if is_transient(exc):
                    log.warning("feed poller tick failed, retrying", error=str(exc))
                else:
                    log.exception("feed poller tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_interval):
                    await self._wakeup.wait()

    async def _tick(self) -> None:
        await self._renew_leases()
        recovered = await self._db.fetch(queries.RECOVER_EXPIRED_RUNS)
        for row in recovered:
            log.warning(
                "feed run lease expired, queued again", run_id=row["run_id"], feed_id=row["feed_id"]
            )
        scheduled = await self._db.fetch(queries.SCHEDULE_DUE_FEEDS)
        for row in scheduled:
            log.info("feed run scheduled", run_id=row["run_id"], feed_id=row["feed_id"])
        if not self._broker.is_ready():
            # A run could not publish: leave queued runs for when the broker answers.
            return
        while len(self._active) < self._settings.max_concurrent_runs:
            claim = await self._claim()
            if claim is None:
                return
            self._active[claim.run_id] = asyncio.create_task(
                self._execute(claim), name=f"feed-run-{claim.run_id}"
            )

    async def _claim(self) -> ClaimedRun | None:
        lease = self._settings.run_lease_seconds
        row = await self._db.fetchrow(queries.CLAIM_APPROVED_RUN, self.replica_id, lease)
        if row is not None:
            return ClaimedRun.from_row(row, is_approval=True)
        row = await self._db.fetchrow(queries.CLAIM_QUEUED_RUN, self.replica_id, lease)
        if row is not None:
            return ClaimedRun.from_row(row, is_approval=False)
        return None

    async def _renew_leases(self) -> None:
        now = time.monotonic()
        if not self._active or now - self._last_renewal < self._settings.run_lease_seconds / 3:
            return
        await self._db.execute(
            queries.RENEW_LEASES,
            list(self._active),
            self.replica_id,
            self._settings.run_lease_seconds,
        )
        self._last_renewal = now

    async def _listen_forever(self) -> None:
        """LISTEN on a connection of its own, reconnecting whenever it drops."""
        delay = 0.2

        def notified(*_: object) -> None:
            self._wakeup.set()

        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._settings.database_url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(FEED_WAKEUP_CHANNEL, notified)
                self._listening = True
                delay = 0.2
                # Anything requested while nobody listened is found by the next tick.
                self._wakeup.set()
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(15):
                            await lost.wait()
                    if not conn.is_closed():
                        # A silent network loss never fires the termination listener.
                        async with asyncio.timeout(5):
                            await conn.execute("SELECT 1")
                log.warning("feed wakeup connection closed, reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect with backoff
                log.warning("feed wakeup listener unavailable", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._listening = False
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 5)
                    except Exception as exc:  # the connection is dropped either way
                        log.debug("feed wakeup connection did not close cleanly", error=str(exc))
                        conn.terminate()

    # --- one run --------------------------------------------------------------------------------

    async def _execute(self, claim: ClaimedRun) -> None:
        bound = log.bind(run_id=claim.run_id, feed_id=claim.feed_id, provider_id=claim.provider_id)
        began = time.monotonic()
        bound.info("feed run started", trigger=claim.trigger, approval=claim.is_approval)
        try:
            try:
                if claim.is_approval:
                    outcome = await self._apply_approval(claim)
                else:
                    outcome = await self._run(claim)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                bound.exception("feed run crashed")
                outcome = RunOutcome(
                    "failed",
                    reason=f"internal error: {type(exc).__name__}: {exc}",
                    reason_code="internal_error",
                )
            await self._finish(claim, outcome, bound)
            RUN_SECONDS.observe(time.monotonic() - began)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Recording failed (database away): the lease expires and the run is queued again.
            bound.exception("could not record the end of a feed run")
        finally:
            self._active.pop(claim.run_id, None)
            self._wakeup.set()

    async def _run(self, claim: ClaimedRun) -> RunOutcome:
        try:
            fetched = await fetch_feed(claim.url, self._policy, self._limits)
        except FetchFailed as exc:
            return RunOutcome("failed", reason=exc.reason, reason_code=exc.reason_code)
        digest = hashlib.sha256(fetched.body).digest()
        if digest == await self._db.fetchval(queries.LAST_OK_BODY_SHA256, claim.feed_id):
            return RunOutcome(
                "not_modified",
                byte_count=fetched.byte_count,
                body_sha256=digest,
            )
        return await self._compare_and_publish(
            claim, fetched.body, digest, received_at=fetched.started_at, check_holds=True
        )

    async def _apply_approval(self, claim: ClaimedRun) -> RunOutcome:
        body = claim.held_body
        if body is None:
            return RunOutcome(
                "failed",
                reason="the held run kept no feed body to apply",
                reason_code="internal_error",
            )
        return await self._compare_and_publish(
            claim,
            body,
            hashlib.sha256(body).digest(),
            received_at=claim.started_at,
            check_holds=False,
        )

    async def _compare_and_publish(
        self,
        claim: ClaimedRun,
        body: bytes,
        digest: bytes,
        *,
        received_at: datetime,
        check_holds: bool,
    ) -> RunOutcome:
        fetched: dict[str, Any] = {"byte_count": len(body), "body_sha256": digest}
        try:
            # Validation is CPU work; a thread keeps the loop answering probes and NOTIFYs.
            parsed = await asyncio.to_thread(
                parse_feed,
                body,
                claim.fmt,
                now=utc_now(),
                max_items=self._settings.max_items,
            )
        except FeedInvalid as exc:
            return RunOutcome("failed", reason=exc.reason, reason_code=exc.reason_code, **fetched)
        stored_rows = await self._db.fetch(queries.STORED_STATE, claim.provider_id)
        protected_after = await self._db.fetchval(
            queries.PROTECTED_AFTER, claim.feed_id, claim.run_id, claim.started_at
        )
        snapshot = SnapshotInput(
            items=parsed.items,
            invalid_ids=parsed.invalid_ids,
            stored=[StoredAsset(**dict(row)) for row in stored_rows],
            snapshot_time=parsed.snapshot_time,
            protected_after=protected_after,
            threshold=claim.threshold,
            seen=parsed.seen,
            invalid=parsed.invalid,
            total_assets=parsed.total_assets,
        )
        plan = await asyncio.to_thread(compare_snapshot, snapshot, check_holds=check_holds)
        compared: dict[str, Any] = {
            **fetched,
            "compared": True,
            "snapshot_time": parsed.snapshot_time,
            "errors": self._stored_errors(parsed),
        }
        if plan.failure is not None:
            return RunOutcome(
                "failed",
                reason=plan.failure.reason,
                reason_code=plan.failure.reason_code,
                counts=plan.counts,
                **compared,
            )
        if plan.hold is not None:
            return RunOutcome(
                "held",
                reason=plan.hold.reason,
                reason_code=plan.hold.reason_code,
                counts=plan.counts,
                held_body=body,
                **compared,
            )
        try:
            await self._publish(claim, plan, parsed.snapshot_time, received_at)
        except BrokerUnavailable as exc:
            return RunOutcome(
                "failed",
                reason=f"broker unavailable: {exc}",
                reason_code="broker_unavailable",
                counts=Counts(seen=parsed.seen, invalid=parsed.invalid),
                **compared,
            )
        return RunOutcome("ok", counts=plan.counts, **compared)

    def _stored_errors(self, parsed: ParsedFeed) -> list[dict[str, Any]]:
        return [e.as_dict() for e in parsed.errors[: self._settings.max_stored_errors]]

    async def _publish(
        self, claim: ClaimedRun, plan: Plan, snapshot_time: datetime, received_at: datetime
    ) -> None:
        """Publish the plan as batch messages, confirms pipelined; raises BrokerUnavailable."""
        size = self._settings.events_per_message
        common: dict[str, Any] = {
            "provider_id": claim.provider_id,
            "source": EventSource.FEED,
            "accepted_at": snapshot_time,
            "received_at": received_at,
            "trace_id": claim.run_id,
        }
        deletion = AssetDeletedPayload(
            reason=f"missing from feed {claim.feed_id} run {claim.run_id}"
        )

        def upserts(start: int) -> list[AssetUpserted | AssetDeleted]:
            return [
                AssetUpserted(
                    event_id=new_event_id(),
                    asset_id=u.item.asset_id,
                    updated_at=u.version_updated_at,
                    payload=AssetUpsertedPayload(
                        document=u.item.document, content_hash=u.item.content_hash.hex()
                    ),
                    **common,
                )
                for u in plan.upserts[start : start + size]
            ]

        def deletions(start: int) -> list[AssetUpserted | AssetDeleted]:
            return [
                AssetDeleted(
                    event_id=new_event_id(),
                    asset_id=asset_id,
                    updated_at=snapshot_time,
                    payload=deletion,
                    **common,
                )
                for asset_id in plan.deletions[start : start + size]
            ]

        window = asyncio.Semaphore(PUBLISH_WINDOW)

        async def publish(build: Any, start: int, kind: str) -> None:
            async with window:
                events = build(start)
                await self._broker.publish(
                    topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for(events)
                )
                EVENTS_PUBLISHED.labels(kind).inc(len(events))

        jobs = [
            *(publish(upserts, s, "asset.upserted") for s in range(0, len(plan.upserts), size)),
            *(publish(deletions, s, "asset.deleted") for s in range(0, len(plan.deletions), size)),
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, BrokerUnavailable):
                raise failure
        if failures:
            raise failures[0]

    async def _finish(self, claim: ClaimedRun, outcome: RunOutcome, bound: Any) -> None:
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
            outcome.byte_count,
            outcome.body_sha256,
            outcome.held_body,
        )
        if row is None:
            bound.warning("feed run was no longer ours to finish (lease lost)")
            return
        RUNS.labels(outcome.status, outcome.reason_code or "").inc()
        bound.info(
            "feed run finished",
            status=outcome.status,
            reason_code=outcome.reason_code,
            reason=outcome.reason,
            **outcome.counts.as_dict(),
        )
