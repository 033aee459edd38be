"""What a feed run is to the poller: the claim it works under and the outcome it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from rwasync.feed_poller.snapshot import Counts
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


@dataclass(frozen=True)
class BodySeen:
    """What the run learnt of the body it fetched (or approved), whatever came after."""

    byte_count: int
    sha256: bytes


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as recorded in `feed_runs`."""

    status: RunStatus
    reason: str | None = None
    reason_code: ReasonCode | None = None
    counts: Counts = field(default_factory=Counts)
    errors: list[dict[str, Any]] = field(default_factory=list)
    body: BodySeen | None = None
    # Set once the run compared the feed with the stored state (ok and held runs, and runs that
    # failed after it): the snapshot time it compared at.
    snapshot_time: datetime | None = None
    # The body an operator may approve later (held runs only).
    held_body: bytes | None = None

    @property
    def compared(self) -> bool:
        return self.snapshot_time is not None
