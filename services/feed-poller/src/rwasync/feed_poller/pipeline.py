"""One feed run, start to end: fetch → parse → plan → publish, returning how it ended.

A fetched body identical to the last `ok` run's is `not_modified` before any parsing. An approved
held run is parsed from its kept body again, compared with the current state without the hold
checks, and published. Recording the outcome is the caller's (it holds the lease).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime

import structlog
from prometheus_client import Counter

from rwasync.feed_poller import queries
from rwasync.feed_poller.fetch import FetchFailed, FetchLimits, fetch_feed
from rwasync.feed_poller.messages import RunContext, plan_messages
from rwasync.feed_poller.parse import FeedInvalid, ParsedFeed, parse_feed
from rwasync.feed_poller.runs import BodySeen, ClaimedRun, RunOutcome
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feed_poller.snapshot import Counts, Plan, SnapshotInput, StoredAsset, compare_snapshot
from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.events import Arrival, EventMessage, EventSource
from rwasync.schema.feeds import ReasonCode, RunStatus
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

EVENTS_PUBLISHED = Counter(
    "rwasync_feed_events_published_total", "Asset events published by feed runs", ["type"]
)

# Publishes in flight at once for one run: enough to pipeline confirms, bounded in memory.
PUBLISH_WINDOW = 64


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


class RunPipeline:
    def __init__(
        self,
        settings: FeedPollerSettings,
        db: Database,
        broker: Broker,
        policy: AddressPolicy,
    ) -> None:
        self._settings = settings
        self._db = db
        self._broker = broker
        self._policy = policy
        self._limits = fetch_limits(settings)

    async def execute(self, claim: ClaimedRun) -> RunOutcome:
        if claim.is_approval:
            return await self._approve(claim)
        try:
            fetched = await fetch_feed(claim.url, self._policy, self._limits)
        except FetchFailed as exc:
            return RunOutcome(RunStatus.FAILED, reason=exc.reason, reason_code=exc.reason_code)
        body = BodySeen(fetched.byte_count, hashlib.sha256(fetched.body).digest())
        if body.sha256 == await self._db.fetchval(queries.LAST_OK_BODY_SHA256, claim.feed_id):
            return RunOutcome(RunStatus.NOT_MODIFIED, body=body)
        return await self._compare_and_publish(
            claim, fetched.body, body, received_at=fetched.started_at, check_holds=True
        )

    async def _approve(self, claim: ClaimedRun) -> RunOutcome:
        raw = claim.held_body
        if raw is None:
            return RunOutcome(
                RunStatus.FAILED,
                reason="the held run kept no feed body to apply",
                reason_code=ReasonCode.INTERNAL_ERROR,
            )
        body = BodySeen(len(raw), hashlib.sha256(raw).digest())
        return await self._compare_and_publish(
            claim, raw, body, received_at=claim.started_at, check_holds=False
        )

    async def _compare_and_publish(
        self,
        claim: ClaimedRun,
        raw: bytes,
        body: BodySeen,
        *,
        received_at: datetime,
        check_holds: bool,
    ) -> RunOutcome:
        try:
            # Validation is CPU work; a thread keeps the loop answering probes and NOTIFYs.
            parsed = await asyncio.to_thread(
                parse_feed, raw, claim.fmt, now=utc_now(), max_items=self._settings.max_items
            )
        except FeedInvalid as exc:
            return RunOutcome(
                RunStatus.FAILED, reason=exc.reason, reason_code=exc.reason_code, body=body
            )
        plan = await self._plan(claim, parsed, check_holds=check_holds)
        errors = [e.as_dict() for e in parsed.errors[: self._settings.max_stored_errors]]
        verdict = plan.failure or plan.hold
        if verdict is not None:
            held = plan.failure is None
            return RunOutcome(
                RunStatus.HELD if held else RunStatus.FAILED,
                reason=verdict.reason,
                reason_code=verdict.reason_code,
                counts=plan.counts,
                errors=errors,
                body=body,
                snapshot_time=parsed.snapshot_time,
                held_body=raw if held else None,
            )
        run = RunContext(
            feed_id=claim.feed_id,
            run_id=claim.run_id,
            snapshot_time=parsed.snapshot_time,
            arrival=Arrival(claim.provider_id, EventSource.FEED, received_at, claim.run_id),
        )
        try:
            await self._publish(plan, run)
        except BrokerUnavailable as exc:
            return RunOutcome(
                RunStatus.FAILED,
                reason=f"broker unavailable: {exc}",
                reason_code=ReasonCode.BROKER_UNAVAILABLE,
                counts=Counts(seen=parsed.seen, invalid=parsed.invalid),
                errors=errors,
                body=body,
                snapshot_time=parsed.snapshot_time,
            )
        return RunOutcome(
            RunStatus.OK,
            counts=plan.counts,
            errors=errors,
            body=body,
            snapshot_time=parsed.snapshot_time,
        )

    async def _plan(self, claim: ClaimedRun, parsed: ParsedFeed, *, check_holds: bool) -> Plan:
        stored_rows = await self._db.fetch(queries.STORED_STATE, claim.provider_id)
        protected_after = await self._db.fetchval(
            queries.PROTECTED_AFTER, claim.feed_id, claim.run_id, claim.started_at
        )
        snapshot = SnapshotInput(
            items=parsed.items,
            invalid_ids=parsed.invalid_ids,
            stored=[
                StoredAsset(
                    asset_id=row["asset_id"],
                    updated_at=row["updated_at"],
                    deleted=row["deleted"],
                    accepted_at=row["accepted_at"],
                    event_id=row["event_id"],
                    source=row["source"],
                    content_hash=row["content_hash"],
                )
                for row in stored_rows
            ],
            snapshot_time=parsed.snapshot_time,
            protected_after=protected_after,
            seen=parsed.seen,
            invalid=parsed.invalid,
            total_assets=parsed.total_assets,
            threshold=claim.threshold,
        )
        return await asyncio.to_thread(compare_snapshot, snapshot, check_holds=check_holds)

    async def _publish(self, plan: Plan, run: RunContext) -> None:
        """Publish the plan's messages, confirms pipelined; raises BrokerUnavailable."""
        window = asyncio.Semaphore(PUBLISH_WINDOW)

        async def publish(message: EventMessage) -> None:
            try:
                await self._broker.publish(
                    topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message
                )
            finally:
                window.release()
            EVENTS_PUBLISHED.labels(str(message.events[0].type)).inc(len(message.events))

        try:
            async with asyncio.TaskGroup() as group:
                for message in plan_messages(plan, run, self._settings.events_per_message):
                    await window.acquire()
                    group.create_task(publish(message))
        except* BrokerUnavailable as failures:
            raise failures.exceptions[0] from None
