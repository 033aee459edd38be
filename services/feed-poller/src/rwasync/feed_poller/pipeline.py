"""One feed run, start to end: fetch → stage → plan → publish, returning how it ended.

A 304 answer to the conditional request, or a decoded body identical to the last `ok` run's, is
`not_modified` before anything is parsed (unless a run since failed having published part of its
snapshot: its counts say so, whatever stopped it). Otherwise the body is staged (`staging`), the
run waits for the provider's accepted pushes to be applied (`_settle_pushes`), the plan pass
decides whether the run is held, and the publish pass sends the events (`publishing`). An
approved held run skips the fetch: unless a later run superseded it meanwhile, its staged
snapshot is compared with the state at that moment, without the hold checks, and published.
Recording the outcome is the caller's (it holds the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import structlog

from rwasync.feed_poller import queries
from rwasync.feed_poller.comparing import Settled, decisions, plan
from rwasync.feed_poller.messages import (
    MissingDocument,
    RunContext,
    deletion_event,
    price_event,
    upsert_event,
    withholds_price,
)
from rwasync.feed_poller.publishing import ConfirmedPublisher
from rwasync.feed_poller.runs import BodySeen, ClaimedRun, RunOutcome
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feed_poller.staging import stage_feed
from rwasync.feed_poller.validation import ItemValidator
from rwasync.feeds.auth import FeedSecrets, SecretsUnavailable
from rwasync.feeds.fetch import Downloaded, FetchFailed, FetchLimits, Validators, download
from rwasync.feeds.reading import FeedFacts
from rwasync.feeds.records import FeedInvalid
from rwasync.feeds.snapshot import Action, Comparison, Counts, hold_verdict, item_errors
from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.feeds import ReasonCode, RunStatus
from rwasync.schema.messages import WireEvent
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

# Seconds between looks at whether the provider's pushes are applied (`_settle_pushes`): the
# first pause, doubled after each look up to the last.
PUSH_SETTLE_POLL: Final = 0.05
PUSH_SETTLE_POLL_MAX: Final = 1.0


def fetch_limits(settings: FeedPollerSettings) -> FetchLimits:
    return FetchLimits(
        connect_timeout=settings.connect_timeout,
        min_rate_bytes=settings.min_rate_bytes,
        min_rate_seconds=settings.min_rate_seconds,
        total_timeout=settings.total_timeout,
        tries=settings.fetch_tries,
        retry_delay=settings.retry_delay,
        max_redirects=settings.max_redirects,
        max_compressed_bytes=settings.max_body_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
    )


@dataclass
class _Snapshot:
    """What the comparison needs to know about the feed read (or the held run approved)."""

    facts: FeedFacts
    seen: int
    invalid: int
    errors: list[dict[str, Any]]
    body: BodySeen = field(default_factory=BodySeen)
    unidentified: int = 0


@dataclass
class _Published:
    """Counts of confirmed events, by what they did."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    stale: int = 0

    def counts(self, snapshot: _Snapshot) -> Counts:
        return Counts(
            seen=snapshot.seen,
            created=self.created,
            updated=self.updated,
            unchanged=self.unchanged,
            stale=self.stale,
            deleted=self.deleted,
            invalid=snapshot.invalid,
        )


class RunPipeline:
    def __init__(
        self,
        settings: FeedPollerSettings,
        db: Database,
        broker: Broker,
        policy: AddressPolicy,
        secrets: FeedSecrets,
        validator: ItemValidator,
    ) -> None:
        self._settings = settings
        self._validator = validator
        self._db = db
        self._broker = broker
        self._policy = policy
        self._secrets = secrets
        self._limits = fetch_limits(settings)

    async def execute(self, claim: ClaimedRun) -> RunOutcome:
        if claim.is_approval:
            return await self._approve(claim)
        try:
            auth = claim.auth(self._secrets)
        except SecretsUnavailable as exc:
            return RunOutcome(RunStatus.FAILED, reason=str(exc), reason_code=ReasonCode.FETCH_ERROR)
        row = await self._db.fetchrow(queries.LAST_VALIDATORS, claim.feed_id)
        conditional = Validators(row["etag"], row["last_modified"]) if row else Validators()
        try:
            downloaded = await download(
                claim.url,
                self._policy,
                self._limits,
                headers=auth.request_headers(),
                conditional=conditional,
                spool_dir=self._settings.spool_dir or None,
            )
        except FetchFailed as exc:
            return RunOutcome(RunStatus.FAILED, reason=exc.reason, reason_code=exc.reason_code)
        try:
            return await self._read(claim, downloaded, conditional)
        finally:
            downloaded.discard()

    async def _read(
        self, claim: ClaimedRun, downloaded: Downloaded, conditional: Validators
    ) -> RunOutcome:
        if downloaded.not_modified:
            answered = downloaded.validators
            kept = Validators(
                answered.etag or conditional.etag,
                answered.last_modified or conditional.last_modified,
            )
            return RunOutcome(RunStatus.NOT_MODIFIED, body=BodySeen(validators=kept))
        body = BodySeen(
            downloaded.body_bytes, downloaded.decoded_bytes, downloaded.sha256,
            downloaded.validators,
        )  # fmt: skip
        if body.sha256 == await self._db.fetchval(queries.LAST_OK_BODY_SHA256, claim.feed_id):
            return RunOutcome(RunStatus.NOT_MODIFIED, body=body)
        async with self._db.connection() as conn:
            try:
                staged = await stage_feed(
                    conn,
                    run_id=claim.run_id,
                    feed_id=claim.feed_id,
                    provider_id=claim.provider_id,
                    fmt=claim.fmt,
                    downloaded=downloaded,
                    validator=self._validator,
                    max_items=self._settings.max_items,
                    max_errors=self._settings.max_stored_errors,
                )
            except FeedInvalid as exc:
                return RunOutcome(
                    RunStatus.FAILED, reason=exc.reason, reason_code=exc.reason_code, body=body
                )
            log.info(
                "feed staged",
                run_id=claim.run_id,
                seen=staged.seen,
                invalid=staged.invalid,
                unchanged_by_fingerprint=staged.skipped_validation,
            )
            snapshot = _Snapshot(
                staged.facts,
                staged.seen,
                staged.invalid,
                [e.as_dict() for e in staged.errors],
                body,
                staged.unidentified,
            )
            return await self._compare_and_publish(
                conn, claim, snapshot, received_at=downloaded.started_at, check_holds=True
            )

    async def _approve(self, claim: ClaimedRun) -> RunOutcome:
        if claim.staged_items is None or claim.snapshot_time is None:
            return RunOutcome(
                RunStatus.FAILED,
                reason="the held run kept no snapshot to apply",
                reason_code=ReasonCode.INTERNAL_ERROR,
            )
        snapshot = _Snapshot(
            FeedFacts(claim.snapshot_time, None),
            claim.counts.get("seen", 0),
            claim.counts.get("invalid", 0),
            claim.errors,
        )
        async with self._db.connection() as conn:
            # Approved while a later run was still under way (or queued, and claimed first):
            # once that one read a newer snapshot, this older one would undo it.
            if await conn.fetchval(queries.RUN_SUPERSEDED, claim.run_id):
                return RunOutcome(
                    RunStatus.FAILED,
                    reason="not applied: a later run of this feed read a newer snapshot "
                    "after this one was approved",
                    reason_code=ReasonCode.SUPERSEDED,
                    counts=Counts(
                        seen=snapshot.seen,
                        invalid=snapshot.invalid,
                        held_deletions=claim.counts.get("held_deletions", 0),
                    ),
                    errors=snapshot.errors,
                )
            return await self._compare_and_publish(
                conn, claim, snapshot, received_at=claim.started_at, check_holds=False
            )

    async def _settle_pushes(self, conn: asyncpg.Connection, claim: ClaimedRun) -> None:
        """Wait (up to `push_settle_timeout`) until the provider's pushes accepted so far are
        applied. The comparison reads the stored catalogue: a push still on its way there would
        otherwise be compared as what it replaces (a deletion not applied yet left a listed
        asset "unchanged", and then deleted for good)."""
        timeout = self._settings.push_settle_timeout
        if not timeout:
            return
        until = utc_now()
        deadline = time.monotonic() + timeout
        pause = PUSH_SETTLE_POLL
        while await conn.fetchval(queries.PUSH_UNDECIDED, claim.provider_id, until):
            if time.monotonic() >= deadline:
                log.warning(
                    "comparing with pushes not yet applied",
                    run_id=claim.run_id,
                    waited_seconds=timeout,
                )
                return
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(2 * pause, PUSH_SETTLE_POLL_MAX)

    async def _compare_and_publish(
        self,
        conn: asyncpg.Connection,
        claim: ClaimedRun,
        snapshot: _Snapshot,
        *,
        received_at: Any,
        check_holds: bool,
    ) -> RunOutcome:
        at = snapshot.facts.snapshot_time
        await self._settle_pushes(conn, claim)
        protected_after = await conn.fetchval(
            queries.PROTECTED_AFTER, claim.feed_id, claim.run_id, claim.started_at
        )
        comparison = Comparison(at, protected_after)
        errors = snapshot.errors
        if check_holds:
            planned = await plan(
                conn,
                run_id=claim.run_id,
                provider_id=claim.provider_id,
                comparison=comparison,
                keep=self._settings.max_stored_errors,
            )
            log.info(
                "feed planned",
                run_id=claim.run_id,
                deletions=planned.deletions,
                live=planned.live,
                superseded=len(planned.superseded),
            )
            errors = item_errors(errors, planned.superseded, self._settings.max_stored_errors)
            verdict = hold_verdict(
                seen=snapshot.seen,
                invalid=snapshot.invalid,
                total_assets=snapshot.facts.total_assets,
                deletions=planned.deletions,
                live=planned.live,
                threshold=claim.threshold,
                snapshot_time=at,
                last_applied=await conn.fetchval(
                    queries.LAST_APPLIED_SNAPSHOT, claim.feed_id, claim.run_id
                ),
                unidentified=snapshot.unidentified,
            )
            if verdict is not None:
                counts = Counts(
                    seen=snapshot.seen,
                    invalid=snapshot.invalid,
                    held_deletions=0 if verdict.failed else planned.deletions,
                )
                return RunOutcome(
                    RunStatus.FAILED if verdict.failed else RunStatus.HELD,
                    reason=verdict.reason,
                    reason_code=verdict.reason_code,
                    counts=counts,
                    errors=errors,
                    body=snapshot.body,
                    snapshot_time=at,
                    staged_items=None if verdict.failed else snapshot.seen,
                )
        run = RunContext(
            feed_id=claim.feed_id,
            run_id=claim.run_id,
            snapshot_time=at,
            arrival=Arrival(claim.provider_id, EventSource.FEED, received_at, claim.run_id),
            new_id=comparison.new_id,  # one drawer of event ids for the whole run
        )
        published = _Published()
        try:
            await self._publish(conn, claim, comparison, run, published)
        except Exception as exc:
            # Whatever stopped the pass, the run says what it published: its counts are what the
            # next run's shortcuts check (a partly published snapshot is compared again).
            if isinstance(exc, BrokerUnavailable):
                reason, code = f"broker unavailable: {exc}", ReasonCode.BROKER_UNAVAILABLE
            else:
                log.exception("feed run failed while publishing", run_id=claim.run_id)
                reason = f"internal error while publishing: {type(exc).__name__}: {exc}"
                code = ReasonCode.INTERNAL_ERROR
            return RunOutcome(
                RunStatus.FAILED,
                reason=reason,
                reason_code=code,
                counts=published.counts(snapshot),
                errors=errors,
                body=snapshot.body,
                snapshot_time=at,
            )
        return RunOutcome(
            RunStatus.OK,
            counts=published.counts(snapshot),
            errors=errors,
            body=snapshot.body,
            snapshot_time=at,
            staged_items=snapshot.seen,
        )

    async def _publish(
        self,
        conn: asyncpg.Connection,
        claim: ClaimedRun,
        comparison: Comparison,
        run: RunContext,
        published: _Published,
    ) -> None:
        """The publish pass: decisions become events, many to a message, sent with
        backpressure; `published` counts what the broker confirmed. A message of upserts is
        also cut once its documents reach the broker's size budget."""
        size = self._settings.events_per_message
        asset_bytes = 0
        assets: list[WireEvent] = []
        asset_kinds: list[Action] = []
        prices: list[WireEvent] = []
        withheld: list[str] = []  # asset ids
        async with ConfirmedPublisher(
            self._broker,
            window=self._settings.publish_window,
            stall_seconds=self._settings.confirm_stall_seconds,
        ) as publisher:

            async def send_assets() -> None:
                nonlocal asset_bytes
                kinds = list(asset_kinds)

                def confirmed(_: list[WireEvent]) -> None:
                    published.created += kinds.count(Action.CREATE)
                    published.updated += kinds.count(Action.UPDATE)
                    published.deleted += kinds.count(Action.DELETE)

                await publisher.publish(
                    topology.ASSETS_EXCHANGE,
                    topology.ASSET_BATCH_KEY,
                    list(assets),
                    confirmed,
                )
                assets.clear()
                asset_kinds.clear()
                asset_bytes = 0

            async def send_prices() -> None:
                await publisher.publish(
                    topology.PRICES_EXCHANGE, topology.PRICE_BATCH_KEY, list(prices), _ignore
                )
                prices.clear()

            settled = Settled()
            walk = decisions(
                conn,
                run_id=claim.run_id,
                provider_id=claim.provider_id,
                comparison=comparison,
                settled=settled,
            )
            # Closed before the connection goes back to the pool, whatever stops the walk.
            async with contextlib.aclosing(walk):
                async for decision, _listing in walk:
                    action = decision.action
                    if action in (Action.CREATE, Action.UPDATE):
                        try:
                            event, document_bytes = upsert_event(decision, run)
                            assets.append(event)
                            asset_kinds.append(action)
                            asset_bytes += document_bytes
                        except MissingDocument:
                            log.warning(
                                "no staged document for a planned upsert; left unchanged",
                                run_id=claim.run_id,
                                asset_id=decision.asset_id,
                            )
                            published.unchanged += 1
                            # Nor its price: as of this snapshot, it could pass for news.
                            withheld.append(decision.asset_id)
                            continue
                    elif action == Action.DELETE:
                        assets.append(deletion_event(decision, run))
                        asset_kinds.append(action)
                    elif action == Action.UNCHANGED:
                        published.unchanged += 1
                        published.stale += decision.stale
                    price = price_event(decision, run)
                    if price is not None:
                        prices.append(price)
                    elif withholds_price(decision):
                        withheld.append(decision.asset_id)
                    if len(assets) >= size or asset_bytes >= topology.MESSAGE_BYTES_BUDGET:
                        await send_assets()
                    if len(prices) >= size:
                        await send_prices()
            published.unchanged += settled.count
            if assets:
                await send_assets()
            if prices:
                await send_prices()
        if withheld:
            await conn.execute(queries.MARK_PRICES_WITHHELD, claim.run_id, withheld)


def _ignore(_: list[WireEvent]) -> None:
    return None
