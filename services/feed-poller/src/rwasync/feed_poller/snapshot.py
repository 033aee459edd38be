"""The snapshot comparison (pure, no I/O): what a feed run must publish to make the provider's
stored catalogue match the feed, or why it must be held (docs/api.md, "Feeds" and "Versions and
ordering").

Versions order as `rwasync.schema.versions` says; a feed item counts as accepted at the snapshot
time, and its event id is drawn here, so the plan compares exactly the version the reconciler
will. The reconciler applies every event under the same guard, so this plan only avoids events
that could never win (unchanged and stale copies) and decides what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

from rwasync.feed_poller.parse import FeedItem
from rwasync.schema.events import new_event_id
from rwasync.schema.feeds import DEFAULT_DELETION_THRESHOLD, DeletionThreshold, ReasonCode
from rwasync.schema.timestamps import timestamp_text
from rwasync.schema.versions import Version

# Sources whose recent changes a feed must not undo (a push the snapshot may not include yet).
PUSH_SOURCES: Final = frozenset({"push", "batch"})


@dataclass(frozen=True, slots=True)
class StoredAsset:
    """One row of the `asset_state` view, as far as the comparison needs it."""

    asset_id: str
    updated_at: datetime
    deleted: bool
    accepted_at: datetime
    event_id: UUID
    source: str
    content_hash: bytes | None

    @property
    def version(self) -> Version:
        return Version(self.updated_at, self.deleted, self.accepted_at, str(self.event_id))


class UpsertKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class Upsert:
    item: FeedItem
    kind: UpsertKind
    # The event's version time: the item's own updated_at, or the snapshot time when the feed
    # re-creates an asset whose deletion is newer than the item (the document keeps its own).
    version_updated_at: datetime
    event_id: UUID


@dataclass(frozen=True, slots=True)
class Counts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    invalid: int = 0
    held_deletions: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "invalid": self.invalid,
            "held_deletions": self.held_deletions,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a run is held (nothing applied) or failed."""

    reason_code: ReasonCode
    reason: str


@dataclass(frozen=True)
class Plan:
    upserts: list[Upsert] = field(default_factory=list)
    # Asset ids to delete; each deletion's version is (snapshot, True, snapshot).
    deletions: list[str] = field(default_factory=list)
    counts: Counts = Counts()
    hold: Verdict | None = None
    failure: Verdict | None = None

    @property
    def applies(self) -> bool:
        return self.hold is None and self.failure is None


@dataclass(frozen=True)
class SnapshotInput:
    items: Sequence[FeedItem]
    # Ids of invalid items: never treated as missing.
    invalid_ids: Collection[str]
    stored: Iterable[StoredAsset]
    snapshot_time: datetime
    # Pushes accepted after this instant are protected from deletion: the start of the previous
    # run of this feed that reached the comparison, or the feed's creation.
    protected_after: datetime
    seen: int
    invalid: int
    total_assets: int | None
    threshold: DeletionThreshold = DEFAULT_DELETION_THRESHOLD


def compare_snapshot(
    snapshot: SnapshotInput,
    *,
    check_holds: bool = True,
    new_id: Callable[[], UUID] = new_event_id,
) -> Plan:
    """Plan a run. With `check_holds` false (an operator approved the snapshot), no hold applies.
    `new_id` draws the event id of each planned upsert."""
    at = snapshot.snapshot_time
    stored = {s.asset_id: s for s in snapshot.stored}
    upserts: list[Upsert] = []
    created = updated = unchanged = 0
    for item in snapshot.items:
        current = stored.get(item.asset_id)
        event_id = new_id()
        newer = (
            current is None or Version(item.updated_at, False, at, str(event_id)) > current.version
        )
        if current is None:
            upserts.append(Upsert(item, UpsertKind.CREATE, item.updated_at, event_id))
            created += 1
        elif current.deleted:
            if newer:
                upserts.append(Upsert(item, UpsertKind.CREATE, item.updated_at, event_id))
                created += 1
            elif at > current.updated_at:
                # The feed lists it after its deletion: re-create, versioned at the snapshot.
                upserts.append(Upsert(item, UpsertKind.CREATE, at, event_id))
                created += 1
            else:
                unchanged += 1
        elif current.content_hash == item.content_hash or not newer:
            # Same document, or a stale copy of an older version: no event.
            unchanged += 1
        else:
            upserts.append(Upsert(item, UpsertKind.UPDATE, item.updated_at, event_id))
            updated += 1

    listed = {item.asset_id for item in snapshot.items}
    deletions: list[str] = []
    for current in stored.values():
        if current.deleted or current.asset_id in listed:
            continue
        if current.asset_id in snapshot.invalid_ids:
            continue  # listed, though invalid: never treated as missing
        if current.updated_at > at:
            continue  # changed after the snapshot was taken
        if current.source in PUSH_SOURCES and current.accepted_at > snapshot.protected_after:
            continue  # pushed since the previous run began: the snapshot may predate it
        deletions.append(current.asset_id)
    deletions.sort()

    if check_holds:
        held = _held_or_failed(snapshot, deletions, stored.values())
        if held is not None:
            verdict, failed = held
            counts = Counts(
                seen=snapshot.seen,
                invalid=snapshot.invalid,
                held_deletions=0 if failed else len(deletions),
            )
            if failed:
                return Plan(counts=counts, failure=verdict)
            return Plan(counts=counts, hold=verdict)

    counts = Counts(
        seen=snapshot.seen,
        created=created,
        updated=updated,
        unchanged=unchanged,
        deleted=len(deletions),
        invalid=snapshot.invalid,
    )
    return Plan(upserts=upserts, deletions=deletions, counts=counts)


def _held_or_failed(
    snapshot: SnapshotInput, deletions: Sequence[str], stored: Iterable[StoredAsset]
) -> tuple[Verdict, bool] | None:
    """The first hold (or failure, flagged True) that applies, in the order docs/api.md lists."""
    total = snapshot.total_assets
    if snapshot.seen == 0:
        return Verdict(ReasonCode.EMPTY_FEED, "the feed lists no assets"), False
    if total is not None and snapshot.seen < total:
        return (
            Verdict(
                ReasonCode.TRUNCATED,
                f"the feed holds {snapshot.seen} items but announces total_assets {total}",
            ),
            False,
        )
    if total is not None and snapshot.seen > total:
        return (
            Verdict(
                ReasonCode.PARSE_ERROR,
                f"the feed holds {snapshot.seen} items, more than its total_assets {total}",
            ),
            True,
        )
    live = sum(1 for s in stored if not s.deleted)
    threshold = snapshot.threshold
    if threshold.exceeded_by(len(deletions), live):
        return (
            Verdict(
                ReasonCode.DELETION_THRESHOLD,
                f"the snapshot of {timestamp_text(snapshot.snapshot_time)} would delete "
                f"{len(deletions)} of {live} live assets, over the threshold "
                f"(more than {threshold.percent} % and more than {threshold.min_count})",
            ),
            False,
        )
    return None
