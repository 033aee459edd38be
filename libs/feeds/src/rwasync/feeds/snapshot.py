"""The snapshot comparison (pure, no I/O): what a feed run must publish to make the provider's
stored catalogue match the feed, and why a run must be held (docs/api.md, "Feeds" and "Versions
and ordering").

The comparison walks one asset id at a time (`Listing`: the feed's rows for that id, valid or
not, and the stored row), so it runs over two sorted streams in bounded memory: the feed poller
feeds it from one ordered SQL join of its staging table with the stored state, the validation
preview from lists. Versions order as `rwasync.schema.versions` says; a feed item counts as
accepted at the snapshot time, and each planned upsert's event id is drawn here, so the plan
compares exactly the version the reconciler will. The reconciler applies every event under the
same guard, so the plan only avoids events that could never win and decides what is missing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.event_ids import event_id_drawer
from rwasync.schema.feeds import DeletionThreshold, ReasonCode
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
    # The latest acceptance of a push of this asset that the reconciler has not decided yet (its
    # change is not in the stored row), if any.
    pending_push_at: datetime | None = None
    # Listed by the latest snapshot of another of the provider's enabled feeds: never deleted by
    # this feed's run (`rwasync.store.feeds.LISTED_BY_ANOTHER_FEED`).
    listed_elsewhere: bool = False
    # The stored document's own updated_at, where it may differ from the version's: a live asset
    # the feed wrote last, listed changed with an older updated_at than the version (None
    # otherwise; reading it from the stored document costs, so the callers' SQL asks only there).
    document_updated_at: datetime | None = None
    # The version and content hash of the base that kept merge patches apply onto (None when the
    # row is its own base): an item newer than the base becomes the new base, the patches folded
    # onto it again (docs/architecture.md, "Patches").
    base_version: Version | None = None
    base_content_hash: bytes | None = None

    @property
    def version(self) -> Version:
        return Version(self.updated_at, self.deleted, self.accepted_at, str(self.event_id))


def base_version(row: Mapping[str, Any], prefix: str) -> Version | None:
    """The version of the base kept patches apply onto, from a row's `asset_state.base_*`
    columns (named with `prefix`); None when the row is its own base."""
    updated_at = row[f"{prefix}updated_at"]
    if updated_at is None:
        return None
    return Version(
        updated_at, bool(row[f"{prefix}deleted"]), row[f"{prefix}accepted_at"],
        row[f"{prefix}event_id"],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One item of the feed with this id: valid (version time and hash known) or not."""

    index: int
    valid: bool
    updated_at: datetime | None = None
    content_hash: bytes | None = None
    # What the caller needs later for this row (its document, its price); never compared.
    payload: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Listing:
    """Everything known about one asset id: the feed's rows for it and the stored row."""

    asset_id: str
    rows: tuple[FeedRow, ...]
    stored: StoredAsset | None


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    # Stored, live and missing from the feed, yet kept (see `Comparison.decide`).
    KEEP = "keep"
    # Listed by an invalid item, or stored as deleted and missing: nothing to do.
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Decision:
    asset_id: str
    action: Action
    # The winning row for creates, updates and unchanged items; the last invalid row of an id
    # that valid rows list too (`NONE`).
    row: FeedRow | None = None
    # An upsert's version time: the item's own updated_at, or the snapshot time when the feed
    # re-creates an asset whose deletion is newer than the item (the document keeps its own).
    version_updated_at: datetime | None = None
    event_id: str | None = None
    # Valid rows with this id that lost to `row` (the latest updated_at wins; at equal, the later
    # in the file).
    superseded: tuple[FeedRow, ...] = ()
    # `UNCHANGED` because the item is older than what is stored (a newer change, or a newer
    # deletion): nothing of it is sent, its price neither.
    stale: bool = False

    @property
    def publishes(self) -> bool:
        return self.action in (Action.CREATE, Action.UPDATE, Action.DELETE)


@dataclass(frozen=True, slots=True)
class Counts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Of the unchanged, the items older than the stored asset or its deletion (a newer push, say):
    # nothing of them was sent. Without it, a run whose changes lost showed only `unchanged`.
    stale: int = 0
    deleted: int = 0
    invalid: int = 0
    held_deletions: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "deleted": self.deleted,
            "invalid": self.invalid,
            "held_deletions": self.held_deletions,
        }


@dataclass
class Tally:
    """What a pass over the listings found: the counts a run reports, the live assets, and the
    superseded duplicates (the `keep` with the lowest indexes, as the run's errors list them)."""

    keep: int = 1000
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deletions: int = 0
    live: int = 0
    # A max-heap by index: (-index, asset id, the winner's index).
    _superseded: list[tuple[int, str, int]] = field(default_factory=list)

    @property
    def superseded(self) -> list[tuple[int, str, int]]:
        """(index, asset id, winner's index), by index."""
        return sorted((-neg, asset_id, winner) for neg, asset_id, winner in self._superseded)

    def add(self, decision: Decision, stored: StoredAsset | None) -> None:
        if stored is not None and not stored.deleted:
            self.live += 1
        match decision.action:
            case Action.CREATE:
                self.created += 1
            case Action.UPDATE:
                self.updated += 1
            case Action.UNCHANGED:
                self.unchanged += 1
            case Action.DELETE:
                self.deletions += 1
            case _:
                pass
        if decision.row is not None:
            for row in decision.superseded:
                entry = (-row.index, decision.asset_id, decision.row.index)
                if len(self._superseded) < self.keep:
                    heapq.heappush(self._superseded, entry)
                elif self.keep and entry > self._superseded[0]:
                    heapq.heapreplace(self._superseded, entry)


@dataclass(frozen=True)
class Comparison:
    """The rules of one run: its snapshot time and the instant after which pushes are protected
    from deletion (the start of the previous run of this feed that reached the comparison, or
    the feed's creation)."""

    snapshot_time: datetime
    protected_after: datetime
    new_id: Callable[[], str] = field(default_factory=event_id_drawer)

    def decide(self, listing: Listing) -> Decision:
        at = self.snapshot_time
        asset_id = listing.asset_id
        current = listing.stored
        valid = [row for row in listing.rows if row.valid]
        if not valid:
            if listing.rows or current is None or current.deleted:
                # Listed, though invalid: never treated as missing.
                return Decision(asset_id, Action.NONE)
            if current.listed_elsewhere:
                return Decision(asset_id, Action.KEEP)  # another feed of the provider lists it
            if current.updated_at > at:
                return Decision(asset_id, Action.KEEP)  # changed after the snapshot
            if current.source in PUSH_SOURCES and current.accepted_at > self.protected_after:
                # Pushed since the previous run began: the snapshot may predate it.
                return Decision(asset_id, Action.KEEP)
            pending = current.pending_push_at
            if pending is not None and pending > self.protected_after:
                # The same, for a push accepted but not applied yet (a deletion versioned at the
                # snapshot would beat it whenever the push is older than the snapshot).
                return Decision(asset_id, Action.KEEP)
            return Decision(asset_id, Action.DELETE, version_updated_at=at)

        if len(valid) < len(listing.rows):
            # Also listed by an invalid item, which may be the newest copy (its updated_at is
            # not to be trusted): the id counts as invalid, nothing of it is published, and its
            # valid copies are listed as superseded by the last invalid one.
            last_invalid = max((r for r in listing.rows if not r.valid), key=lambda r: r.index)
            by_index = tuple(sorted(valid, key=lambda r: r.index))
            return Decision(asset_id, Action.NONE, last_invalid, superseded=by_index)
        superseded: tuple[FeedRow, ...] = ()
        if len(valid) == 1:
            winner = valid[0]
        else:
            winner = max(valid, key=lambda row: (row.updated_at, row.index))
            superseded = tuple(sorted((r for r in valid if r is not winner), key=lambda r: r.index))
        assert winner.updated_at is not None
        event_id = self.new_id()
        version = Version(winner.updated_at, False, at, event_id)
        newer = current is None or version > current.version
        if current is None or (current.deleted and newer):
            return Decision(
                asset_id, Action.CREATE, winner, winner.updated_at, event_id, superseded
            )
        if current.deleted:
            if at > current.updated_at:
                # The feed lists it after its deletion: re-create, versioned at the snapshot.
                return Decision(asset_id, Action.CREATE, winner, at, event_id, superseded)
            return Decision(asset_id, Action.UNCHANGED, winner, superseded=superseded, stale=True)
        if current.content_hash == winner.content_hash:
            return Decision(asset_id, Action.UNCHANGED, winner, superseded=superseded)
        if not newer:
            if _rebases_under_patches(current, version, winner):
                # Older than a patch above the stored base, newer than the base: the reconciler
                # makes it the base and folds the patches onto it again, as for a push.
                return Decision(
                    asset_id, Action.UPDATE, winner, winner.updated_at, event_id, superseded
                )
            if _edits_a_recreation(current, winner.updated_at, at):
                # Versioned at the snapshot, as the re-creation was: the item's own updated_at
                # would lose to that re-creation's snapshot time for as long as it is older.
                return Decision(asset_id, Action.UPDATE, winner, at, event_id, superseded)
            # A stale copy of an older version: no event.
            return Decision(asset_id, Action.UNCHANGED, winner, superseded=superseded, stale=True)
        return Decision(asset_id, Action.UPDATE, winner, winner.updated_at, event_id, superseded)


def _rebases_under_patches(current: StoredAsset, item: Version, row: FeedRow) -> bool:
    """Whether an item not newer than the stored (patched) version is newer than the base its
    patches apply onto, with other content than that base's."""
    base = current.base_version
    return (
        base is not None
        and not base.is_deletion
        and item > base
        and row.content_hash != current.base_content_hash
    )


def _edits_a_recreation(current: StoredAsset, item_updated_at: datetime, at: datetime) -> bool:
    """Whether an item older than the stored version changes an asset that a feed re-created
    at an earlier snapshot (versioned at that snapshot, its document older): the item is newer
    than the stored document, and this snapshot later than the re-creation's."""
    own = current.document_updated_at
    return (
        current.source == "feed"
        and own is not None
        and own < current.updated_at
        and own < item_updated_at
        and current.updated_at < at
    )


class ListingGrouper:
    """Turns rows of the feed-and-stored join, ordered by asset id, into one `Listing` per id."""

    def __init__(self) -> None:
        self._asset_id: str | None = None
        self._rows: list[FeedRow] = []
        self._stored: StoredAsset | None = None

    def add(self, asset_id: str, row: FeedRow | None, stored: StoredAsset | None) -> Listing | None:
        """Add one joined row; returns the previous id's listing when this row starts a new id."""
        done = None
        if asset_id != self._asset_id:
            done = self.flush()
            self._asset_id = asset_id
        if row is not None:
            self._rows.append(row)
        if stored is not None:
            self._stored = stored
        return done

    def flush(self) -> Listing | None:
        if self._asset_id is None:
            return None
        listing = Listing(self._asset_id, tuple(self._rows), self._stored)
        self._asset_id, self._rows, self._stored = None, [], None
        return listing


def listings(
    rows: Iterable[tuple[str, FeedRow]], stored: Iterable[StoredAsset]
) -> Iterator[Listing]:
    """Listings from in-memory feed rows `(asset_id, row)` and stored assets (any order)."""
    by_id: dict[str, list[FeedRow]] = {}
    for asset_id, row in rows:
        by_id.setdefault(asset_id, []).append(row)
    stored_by_id = {s.asset_id: s for s in stored}
    for asset_id in sorted(by_id.keys() | stored_by_id.keys()):
        yield Listing(asset_id, tuple(by_id.get(asset_id, ())), stored_by_id.get(asset_id))


def _over(threshold: DeletionThreshold) -> str:
    # Normalised, so a threshold read back from the database (20.0) reads as the default (20).
    percent = normalize_decimal(threshold.percent)
    return f"over the threshold (more than {percent} % and more than {threshold.min_count})"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a run is held (nothing applied) or failed."""

    reason_code: ReasonCode
    reason: str
    failed: bool = False


def hold_verdict(
    *,
    seen: int,
    invalid: int,
    total_assets: int | None,
    deletions: int,
    live: int,
    threshold: DeletionThreshold,
    snapshot_time: datetime,
    last_applied: datetime | None = None,
    unidentified: int = 0,
) -> Verdict | None:
    """The first hold (or failure) that applies, in the order docs/api.md lists them.
    `last_applied`: the newest snapshot time among the feed's applied (`ok`) runs, if any (an
    approved older snapshot does not lower it);
    `unidentified`: the invalid items whose id could not be read."""
    if seen == 0:
        return Verdict(ReasonCode.EMPTY_FEED, "the feed lists no assets")
    if total_assets is not None and seen > total_assets:
        return Verdict(
            ReasonCode.PARSE_ERROR,
            f"the feed holds {seen} items, more than its total_assets {total_assets}",
            failed=True,
        )
    if invalid == seen:
        return Verdict(
            ReasonCode.PARSE_ERROR, f"every one of the feed's {seen} items is invalid", failed=True
        )
    if total_assets is not None and seen < total_assets:
        return Verdict(
            ReasonCode.TRUNCATED,
            f"the feed holds {seen} items but announces total_assets {total_assets}",
        )
    if last_applied is not None and snapshot_time < last_applied:
        # Its items lose to what newer snapshots stored, but its deletions, versioned at the
        # snapshot, win over every asset not changed since it, listed by newer snapshots or not:
        # approved, it takes the catalogue back to the older copy. One reason code a run, so the
        # deletions (and the threshold they pass) are told here.
        reason = (
            f"the snapshot of {timestamp_text(snapshot_time)} is older than the newest one the "
            f"feed applied, of {timestamp_text(last_applied)} (a stale copy, or the snapshot's "
            "clock went back): its items older than the stored assets would be ignored"
        )
        if deletions:
            reason += (
                f", but it would delete {deletions} of {live} live assets, even ones a newer "
                "snapshot lists"
            )
            if threshold.exceeded_by(deletions, live):
                reason += f", {_over(threshold)}"
        return Verdict(ReasonCode.STALE_SNAPSHOT, reason)
    if threshold.exceeded_by(deletions, live):
        return Verdict(
            ReasonCode.DELETION_THRESHOLD,
            f"the snapshot of {timestamp_text(snapshot_time)} would delete {deletions} of {live} "
            f"live assets, {_over(threshold)}",
        )
    if unidentified and deletions:
        # An invalid item listed by its id protects that asset from deletion; one whose id
        # cannot be read (a line garbled from its start) protects nothing it could be.
        return Verdict(
            ReasonCode.UNIDENTIFIED_ITEMS,
            f"{unidentified} invalid item(s) carry no id that can be read, and the snapshot "
            f"would delete {deletions} asset(s): any of them may be one of those items",
        )
    return None


def item_errors(
    invalid: list[dict[str, Any]], superseded: list[tuple[int, str, int]], keep: int
) -> list[dict[str, Any]]:
    """A run's `errors`: invalid items and superseded duplicates (pointer `/id`), by index, at
    most `keep` of them."""
    duplicates = [
        {
            "index": index,
            "id": asset_id,
            "errors": [
                {
                    "pointer": "/id",
                    "message": f"duplicate id {asset_id!r}: superseded by index {winner}",
                }
            ],
        }
        for index, asset_id, winner in superseded
    ]
    return sorted(invalid + duplicates, key=lambda e: int(e["index"]))[:keep]
