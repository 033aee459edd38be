"""What a feed run is to the poller: the claim it works under and the outcome it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from rwasync.feeds.auth import FeedAuth, FeedSecrets
from rwasync.feeds.fetch import Validators
from rwasync.feeds.snapshot import Counts
from rwasync.schema.feeds import DeletionThreshold, ReasonCode, RunStatus


@dataclass(frozen=True)
class ClaimedRun:
    """A run this replica holds the lease of, with what executing it needs."""

    run_id: str
    feed_id: str
    provider_id: str
    trigger: str
    started_at: datetime
    url: str
    fmt: str
    threshold: DeletionThreshold
    feed_created_at: datetime
    # This claim applies an operator's approval of a held run, whose snapshot was staged.
    is_approval: bool
    auth_public: dict[str, Any] | None = None
    auth_sealed: bytes | None = field(default=None, repr=False)
    # For approvals: what the held run recorded.
    snapshot_time: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    staged_items: int | None = None

    def auth(self, secrets: FeedSecrets) -> FeedAuth:
        """The feed's credentials, opened (raises SecretsUnavailable)."""
        return FeedAuth.from_public(self.auth_public, secrets.open(self.auth_sealed))

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
            auth_public=row["auth"],
            auth_sealed=row["auth_secret"],
            snapshot_time=row["snapshot_time"],
            counts=row["counts"] or {},
            errors=row["errors"] or [],
            staged_items=row["staged_items"],
        )


@dataclass(frozen=True)
class BodySeen:
    """What the run learnt of the body it fetched, whatever came after."""

    byte_count: int | None = None
    decoded_bytes: int | None = None
    sha256: bytes | None = None
    validators: Validators = field(default_factory=Validators)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as recorded in `feed_runs`."""

    status: RunStatus
    reason: str | None = None
    reason_code: ReasonCode | None = None
    counts: Counts = field(default_factory=Counts)
    errors: list[dict[str, Any]] = field(default_factory=list)
    body: BodySeen = field(default_factory=BodySeen)
    # Set once the run compared the feed with the stored state (ok and held runs, and runs that
    # failed after it): the snapshot time it compared at.
    snapshot_time: datetime | None = None
    # How many items the run staged, once its snapshot is complete in `feed_run_items`.
    staged_items: int | None = None

    @property
    def compared(self) -> bool:
        return self.snapshot_time is not None
