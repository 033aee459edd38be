"""The poller's loop: every `poll_interval` (or sooner, when woken), renew leases, schedule due
feeds, recover abandoned runs, and claim runs up to the concurrency limit (and of each provider up
to its own, fairly: `claims.py`); each claimed run goes through the pipeline and its outcome is
recorded under the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time

import structlog
from prometheus_client import Counter, Histogram

from rwasync.feed_poller.claims import RunClaims
from rwasync.feed_poller.pipeline import RunPipeline
from rwasync.feed_poller.runs import ClaimedRun, RunOutcome
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.feed_poller.validation import ItemValidator
from rwasync.feed_poller.wakeup import Wakeup
from rwasync.feeds.auth import FeedSecrets
from rwasync.platform import tracing
from rwasync.platform.broker import Broker
from rwasync.platform.db import Database, DatabaseUnavailable, is_transient
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.feeds import ReasonCode, RunStatus

log = structlog.get_logger(__name__)

RUNS = Counter(
    "rwasync_feed_runs_total", "Feed runs finished, by outcome", ["outcome", "reason_code"]
)
RUN_SECONDS = Histogram(
    "rwasync_feed_run_seconds",
    "Time from claim to the end of a feed run, by outcome",
    ["outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800),
)


# How long a stopping poller waits for a claim in flight to come back (so as to hand it back).
STOP_CLAIM_WAIT = 5.0


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


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
        self._broker = broker
        policy = policy or AddressPolicy.from_setting(settings.feed_allowed_networks)
        secrets = FeedSecrets(settings.feed_secrets_key.get_secret_value())
        self._validator = ItemValidator(settings.validation_workers, settings.max_item_bytes)
        self._pipeline = RunPipeline(settings, db, broker, policy, secrets, self._validator)
        self.replica_id = settings.replica_id or _default_replica_id()
        self._claims = RunClaims(
            db, self.replica_id, settings.run_lease_seconds, settings.max_runs_per_provider
        )
        self._wakeup = asyncio.Event()
        self._listener = Wakeup(settings.database_url, self._wakeup)
        self._active: dict[str, asyncio.Task[None]] = {}
        # Runs recording their end: past their lease check (`finish` decides whose they are).
        self._finishing: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        # Every line of the poller's work names the replica, as feed_runs.claimed_by does (it was
        # in no line: an operator could not tell which poller held or dropped a run).
        structlog.contextvars.bind_contextvars(replica_id=self.replica_id)
        self._validator.start()
        self._tasks = [
            asyncio.create_task(self._loop(), name="feed-poller-loop"),
            asyncio.create_task(self._listener.listen_forever(), name="feed-poller-listen"),
        ]

    def is_running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    @property
    def runs_in_progress(self) -> list[str]:
        return list(self._active)

    @property
    def is_listening(self) -> bool:
        return self._listener.listening

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
        await self._claims.release(run_ids)
        self._validator.close()

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
        for run_id in await self._claims.renew(list(self._active)):
            task = self._active.get(run_id)
            if task is not None and run_id not in self._finishing:
                # Two replicas must not run one feed: this one stops (nothing it published is
                # lost or harmful: the reconciler's version guard sees repeats as such).
                log.warning("feed run lease lost, stopping it here", run_id=run_id)
                task.cancel()
        await self._claims.schedule_due()
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
        """The next claim. Stopping the loop while the database commits a claim must not
        forget it (the run would wait out a lease nobody renews): the claim gets a few seconds
        to finish, and a claim that arrives after the stop is handed back at once."""
        claiming = asyncio.ensure_future(self._claims.claim())
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            await asyncio.wait({claiming}, timeout=STOP_CLAIM_WAIT)
            if not claiming.done():
                claiming.cancel()  # the database is not answering: its lease will run out
            elif not claiming.cancelled() and claiming.exception() is None:
                claim = claiming.result()
                if claim is not None:
                    await self._claims.release([claim.run_id])
            raise

    async def _execute(self, claim: ClaimedRun) -> None:
        # A run's trace is its run id: its events carry it, and so do the messages and the
        # reconciler's log lines about them.
        tracing.bind(str(claim.run_id))
        bound = log.bind(run_id=claim.run_id, feed_id=claim.feed_id, provider_id=claim.provider_id)
        began = time.monotonic()
        bound.info("feed run started", trigger=claim.trigger, approval=claim.is_approval)
        try:
            try:
                outcome = await self._pipeline.execute(claim)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    # The database went away before anything was published: the run is not the
                    # provider's failure. It goes back to the queue, after a pause (if the
                    # database cannot take it back now, its lease runs out instead).
                    bound.warning(
                        "feed run interrupted by the database; queued again", error=str(exc)
                    )
                    await asyncio.sleep(self._settings.retry_delay)
                    await self._claims.release([claim.run_id])
                    return
                bound.exception("feed run crashed")
                outcome = RunOutcome(
                    RunStatus.FAILED,
                    reason=f"internal error: {type(exc).__name__}: {exc}",
                    reason_code=ReasonCode.INTERNAL_ERROR,
                )
            self._finishing.add(claim.run_id)
            if not await self._claims.finish(claim, outcome):
                bound.warning("feed run was no longer ours to finish (lease lost)")
                return
            RUNS.labels(outcome.status, outcome.reason_code or "").inc()
            RUN_SECONDS.labels(outcome.status).observe(time.monotonic() - began)
            bound.info(
                "feed run finished",
                status=outcome.status,
                reason_code=outcome.reason_code,
                reason=outcome.reason,
                **outcome.counts.as_dict(),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # Recording failed (database away): the lease expires and the run is queued again.
            bound.exception("could not record the end of a feed run")
        finally:
            self._finishing.discard(claim.run_id)
            # Only its own entry: a run stopped for a lost lease may meanwhile have been claimed
            # again by this replica, under the same run id.
            if self._active.get(claim.run_id) is asyncio.current_task():
                del self._active[claim.run_id]
            self._wakeup.set()
