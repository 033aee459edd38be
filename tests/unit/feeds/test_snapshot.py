"""The snapshot comparison: every rule of docs/api.md "Feeds" and "Versions and ordering" that a
run's plan follows."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwasync.feeds.snapshot import (
    Action,
    Comparison,
    Counts,
    FeedRow,
    StoredAsset,
    Tally,
    Verdict,
    hold_verdict,
    listings,
)
from rwasync.schema.feeds import DeletionThreshold
from rwasync.schema.versions import Version

pytestmark = pytest.mark.unit

SNAPSHOT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
# The previous run of the feed started a day before this snapshot.
PREVIOUS_RUN = SNAPSHOT - timedelta(days=1)
HOUR = timedelta(hours=1)
# A threshold no rule test reaches, so holds only appear where a test asks for them.
NO_THRESHOLD = DeletionThreshold(percent=Decimal(100), min_count=10**9)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class FeedItem:
    """A valid item of the feed, as the comparison sees it."""

    index: int
    asset_id: str
    updated_at: datetime
    content_hash: bytes


@dataclass(frozen=True)
class Upsert:
    item: FeedItem
    kind: Action
    version_updated_at: datetime | None
    event_id: str | None


@dataclass
class Plan:
    """What a run does with the snapshot: the decisions of one pass, and the hold check."""

    upserts: list[Upsert] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    hold: Verdict | None = None
    failure: Verdict | None = None

    @property
    def applies(self) -> bool:
        return self.hold is None and self.failure is None


class UpsertKind:
    CREATE = Action.CREATE
    UPDATE = Action.UPDATE


def item(asset_id: str, updated_at: datetime, body: str = "v1", index: int = 0) -> FeedItem:
    return FeedItem(
        index=index,
        asset_id=asset_id,
        updated_at=updated_at,
        content_hash=digest(f"{asset_id}/{body}/{updated_at.isoformat()}"),
    )


def stored(
    asset_id: str,
    updated_at: datetime,
    *,
    deleted: bool = False,
    accepted_at: datetime | None = None,
    source: str = "feed",
    same_as: FeedItem | None = None,
    body: str = "stored",
) -> StoredAsset:
    content = same_as.content_hash if same_as is not None else digest(f"{asset_id}/{body}")
    return StoredAsset(
        asset_id=asset_id,
        updated_at=updated_at,
        deleted=deleted,
        accepted_at=accepted_at or updated_at,
        event_id=uuid.uuid4(),
        source=source,
        content_hash=content,
    )


def plan_for(
    items: Sequence[FeedItem],
    stored_assets: Iterable[StoredAsset] = (),
    *,
    invalid_ids: Iterable[str] = (),
    invalid: int = 0,
    seen: int | None = None,
    total: int | Literal["seen"] | None = "seen",
    threshold: DeletionThreshold = NO_THRESHOLD,
    check_holds: bool = True,
) -> Plan:
    """Run the comparison as a feed run does: decide every listing, then check the holds."""
    seen = len(items) + invalid if seen is None else seen
    by_row: dict[int, FeedItem] = {}
    rows: list[tuple[str, FeedRow]] = []
    for position, feed_item in enumerate(items):
        row = FeedRow(position, True, feed_item.updated_at, feed_item.content_hash)
        by_row[position] = feed_item
        rows.append((feed_item.asset_id, row))
    rows.extend(
        (asset_id, FeedRow(len(items) + k, False)) for k, asset_id in enumerate(invalid_ids)
    )
    comparison = Comparison(SNAPSHOT, PREVIOUS_RUN)
    tally = Tally()
    plan = Plan()
    for listing in listings(rows, stored_assets):
        decision = comparison.decide(listing)
        tally.add(decision, listing.stored)
        if decision.action in (Action.CREATE, Action.UPDATE):
            assert decision.row is not None
            plan.upserts.append(
                Upsert(
                    by_row[decision.row.index],
                    decision.action,
                    decision.version_updated_at,
                    decision.event_id,
                )
            )
        elif decision.action == Action.DELETE:
            plan.deletions.append(decision.asset_id)
    plan.upserts.sort(key=lambda u: u.item.index)
    if check_holds:
        verdict = hold_verdict(
            seen=seen,
            invalid=invalid,
            total_assets=seen if total == "seen" else total,
            deletions=tally.deletions,
            live=tally.live,
            threshold=threshold,
            snapshot_time=SNAPSHOT,
        )
        if verdict is not None:
            held = Counts(
                seen=seen, invalid=invalid, held_deletions=0 if verdict.failed else tally.deletions
            )
            if verdict.failed:
                return Plan(counts=held, failure=verdict)
            return Plan(counts=held, hold=verdict)
    plan.counts = Counts(
        seen=seen,
        created=tally.created,
        updated=tally.updated,
        unchanged=tally.unchanged,
        deleted=tally.deletions,
        invalid=invalid,
    )
    return plan


# --- items in the feed --------------------------------------------------------------------------


def test_an_unknown_asset_is_created_at_its_own_version() -> None:
    new = item("a", SNAPSHOT - HOUR)
    plan = plan_for([new])
    assert [(u.item.asset_id, u.kind, u.version_updated_at) for u in plan.upserts] == [
        ("a", UpsertKind.CREATE, SNAPSHOT - HOUR)
    ]
    assert plan.counts.created == 1 and plan.counts.seen == 1
    assert plan.deletions == [] and plan.applies


def test_the_same_document_is_unchanged_and_costs_no_event() -> None:
    same = item("a", SNAPSHOT - HOUR)
    plan = plan_for([same], [stored("a", SNAPSHOT - HOUR, same_as=same)])
    assert plan.upserts == []
    assert plan.counts.unchanged == 1 and plan.counts.updated == 0


def test_a_newer_document_is_an_update() -> None:
    newer = item("a", SNAPSHOT - HOUR, "v2")
    plan = plan_for([newer], [stored("a", SNAPSHOT - 2 * HOUR)])
    assert [(u.kind, u.version_updated_at) for u in plan.upserts] == [
        (UpsertKind.UPDATE, SNAPSHOT - HOUR)
    ]
    assert plan.counts.updated == 1


def test_a_stale_copy_counts_as_unchanged_without_an_event() -> None:
    # A push changed the asset after the provider's feed copy was written.
    stale = item("a", SNAPSHOT - 2 * HOUR, "old")
    plan = plan_for([stale], [stored("a", SNAPSHOT - HOUR, source="push")])
    assert plan.upserts == []
    assert plan.counts.unchanged == 1 and plan.counts.updated == 0


def test_at_equal_updated_at_the_later_accepted_change_wins() -> None:
    changed = item("a", SNAPSHOT - HOUR, "v2")
    accepted_before = stored("a", SNAPSHOT - HOUR, accepted_at=SNAPSHOT - HOUR)
    accepted_after = stored("a", SNAPSHOT - HOUR, accepted_at=SNAPSHOT + HOUR, source="push")
    assert plan_for([changed], [accepted_before]).counts.updated == 1
    later = plan_for([changed], [accepted_after])
    assert later.upserts == [] and later.counts.unchanged == 1


def test_a_deleted_asset_with_a_newer_item_is_created_at_the_items_version() -> None:
    back = item("a", SNAPSHOT - HOUR)
    plan = plan_for([back], [stored("a", SNAPSHOT - 2 * HOUR, deleted=True)])
    assert [(u.kind, u.version_updated_at) for u in plan.upserts] == [
        (UpsertKind.CREATE, SNAPSHOT - HOUR)
    ]
    assert plan.counts.created == 1


def test_a_deletion_older_than_the_snapshot_is_undone_at_the_snapshot_time() -> None:
    # The item predates the deletion, but the feed was generated after it: re-create.
    listed = item("a", SNAPSHOT - 3 * HOUR)
    plan = plan_for([listed], [stored("a", SNAPSHOT - 2 * HOUR, deleted=True)])
    [upsert] = plan.upserts
    assert upsert.kind == UpsertKind.CREATE
    assert upsert.version_updated_at == SNAPSHOT
    # The document keeps its own updated_at.
    assert upsert.item.updated_at == SNAPSHOT - 3 * HOUR
    assert plan.counts.created == 1


# A document the provider wrote a month before the snapshot, and its edit a day later.
WRITTEN = SNAPSHOT - timedelta(days=30)
EDITED = WRITTEN + timedelta(days=1)


def recreated(asset_id: str, snapshot: datetime, *, source: str = "feed") -> StoredAsset:
    """An asset a feed re-created at `snapshot`, its document older (as the test above makes)."""
    return dataclasses.replace(
        stored(asset_id, snapshot, body="recreated", source=source), document_updated_at=WRITTEN
    )


def test_a_newer_edit_of_a_recreated_asset_is_an_update_at_the_snapshot_time() -> None:
    # Re-created at the previous run's snapshot, the asset's version is that snapshot time: the
    # provider's next edit, older than it but newer than the document stored, must still apply
    # (it was counted unchanged, silently, for as long as the provider's clock stayed behind).
    plan = plan_for([item("a", EDITED, "v2")], [recreated("a", PREVIOUS_RUN)])
    assert [(u.kind, u.version_updated_at) for u in plan.upserts] == [(UpsertKind.UPDATE, SNAPSHOT)]
    assert plan.counts.updated == 1


def test_an_older_copy_of_a_recreated_asset_stays_stale() -> None:
    for copy_at in (WRITTEN - HOUR, WRITTEN):  # older than, or as old as, the document stored
        plan = plan_for([item("a", copy_at, "v0")], [recreated("a", PREVIOUS_RUN)])
        assert plan.upserts == [] and plan.counts.unchanged == 1
    # Nor when the re-creation is not older than this snapshot (a re-run of the same snapshot),
    # nor when a push wrote the stored version.
    edited = item("a", EDITED, "v2")
    assert plan_for([edited], [recreated("a", SNAPSHOT)]).upserts == []
    assert plan_for([edited], [recreated("a", PREVIOUS_RUN, source="push")]).upserts == []


def patched_above(base_at: datetime, patch_at: datetime, base_body: str = "base") -> StoredAsset:
    """An asset whose base (at `base_at`) has a merge patch kept above it (at `patch_at`)."""
    row = stored("a", patch_at, body="patched")
    base = Version(base_at, False, base_at, str(uuid.uuid4()))
    return dataclasses.replace(row, base_version=base, base_content_hash=digest(f"a/{base_body}"))


def test_an_item_between_a_base_and_its_patch_is_an_update_the_patch_folds_onto() -> None:
    # As for a push: the reconciler makes it the base and folds the patch onto it again.
    between = item("a", SNAPSHOT - 2 * HOUR, "renamed")
    plan = plan_for([between], [patched_above(SNAPSHOT - 3 * HOUR, SNAPSHOT - HOUR)])
    assert [(u.kind, u.version_updated_at) for u in plan.upserts] == [
        (UpsertKind.UPDATE, SNAPSHOT - 2 * HOUR)
    ]


def test_an_item_older_than_the_base_or_the_same_as_it_is_unchanged() -> None:
    kept = patched_above(SNAPSHOT - 3 * HOUR, SNAPSHOT - HOUR)
    older = item("a", SNAPSHOT - 4 * HOUR, "older")
    assert plan_for([older], [kept]).upserts == []
    same = FeedItem(0, "a", SNAPSHOT - 2 * HOUR, digest("a/base"))  # the base's content again
    assert plan_for([same], [kept]).upserts == []


def test_a_deletion_not_older_than_the_snapshot_stays() -> None:
    listed = item("a", SNAPSHOT - 3 * HOUR)
    for deleted_at in (SNAPSHOT, SNAPSHOT + HOUR):
        plan = plan_for([listed], [stored("a", deleted_at, deleted=True)])
        assert plan.upserts == [] and plan.counts.unchanged == 1


# --- assets missing from the feed ---------------------------------------------------------------


def test_a_live_asset_missing_from_the_feed_is_deleted() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    plan = plan_for(
        [kept], [stored("kept", SNAPSHOT - HOUR, same_as=kept), stored("gone", SNAPSHOT - HOUR)]
    )
    assert plan.deletions == ["gone"]
    assert plan.counts.deleted == 1 and plan.counts.unchanged == 1


def test_an_asset_changed_after_the_snapshot_is_not_deleted() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    plan = plan_for([kept], [stored("newer", SNAPSHOT + timedelta(seconds=1))])
    assert plan.deletions == []


def test_a_push_accepted_after_the_previous_run_started_is_not_deleted() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    for source in ("push", "batch"):
        pushed = stored(
            "pushed",
            SNAPSHOT - 2 * HOUR,
            accepted_at=PREVIOUS_RUN + timedelta(seconds=1),
            source=source,
        )
        assert plan_for([kept], [pushed]).deletions == []


def test_a_push_accepted_before_the_previous_run_started_is_deleted() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    pushed = stored(
        "pushed",
        SNAPSHOT - 2 * HOUR,
        accepted_at=PREVIOUS_RUN - timedelta(seconds=1),
        source="push",
    )
    assert plan_for([kept], [pushed]).deletions == ["pushed"]


def test_a_push_accepted_but_not_applied_yet_is_protected_as_an_applied_one() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    for accepted_at, deleted in ((PREVIOUS_RUN + timedelta(seconds=1), []), (PREVIOUS_RUN, ["p"])):
        pending = dataclasses.replace(
            stored("p", SNAPSHOT - 2 * HOUR, source="feed"), pending_push_at=accepted_at
        )
        assert plan_for([kept], [pending]).deletions == deleted


def test_a_feed_change_after_the_previous_run_is_not_protected() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    from_feed = stored("fed", SNAPSHOT - 2 * HOUR, accepted_at=PREVIOUS_RUN + HOUR, source="feed")
    assert plan_for([kept], [from_feed]).deletions == ["fed"]


def test_an_invalid_item_is_never_treated_as_missing() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    plan = plan_for([kept], [stored("broken", SNAPSHOT - HOUR)], invalid_ids={"broken"}, invalid=1)
    assert plan.deletions == []
    assert plan.counts.invalid == 1 and plan.counts.seen == 2


def test_an_id_also_listed_by_an_invalid_item_publishes_nothing() -> None:
    """The invalid copy may be the newest: the older valid copy must not win by default."""
    older = item("a", SNAPSHOT - 2 * HOUR, "older")
    plan = plan_for([older], [stored("a", SNAPSHOT - 3 * HOUR)], invalid_ids=["a"], invalid=1)
    assert plan.upserts == [] and plan.deletions == []
    assert plan.applies and plan.counts.invalid == 1
    assert plan.counts.created + plan.counts.updated + plan.counts.unchanged == 0
    fresh = plan_for([older], invalid_ids=["a"], invalid=1)
    assert fresh.upserts == [] and fresh.applies


def test_an_asset_another_enabled_feed_lists_is_not_deleted() -> None:
    sibling = dataclasses.replace(stored("b", SNAPSHOT - 2 * HOUR), listed_elsewhere=True)
    plan = plan_for([item("a", SNAPSHOT - HOUR)], [sibling])
    assert plan.deletions == [] and plan.applies


def test_an_asset_already_deleted_is_not_deleted_again() -> None:
    kept = item("kept", SNAPSHOT - HOUR)
    assert plan_for([kept], [stored("old", SNAPSHOT - HOUR, deleted=True)]).deletions == []


# --- holds --------------------------------------------------------------------------------------


def live_assets(count: int) -> list[StoredAsset]:
    return [stored(f"asset-{n:03d}", SNAPSHOT - 2 * HOUR) for n in range(count)]


def test_an_empty_feed_is_held_with_its_deletions_counted() -> None:
    plan = plan_for([], live_assets(3))
    assert plan.hold is not None and plan.hold.reason_code == "empty_feed"
    assert plan.upserts == [] and plan.deletions == []
    assert plan.counts.as_dict() == {
        "seen": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "deleted": 0,
        "invalid": 0,
        "held_deletions": 3,
    }


def test_fewer_items_than_announced_is_held_as_truncated() -> None:
    plan = plan_for([item("a", SNAPSHOT - HOUR)], live_assets(2), total=5)
    assert plan.hold is not None and plan.hold.reason_code == "truncated"
    assert plan.failure is None
    assert plan.counts.held_deletions == 2 and plan.counts.created == 0


def test_a_snapshot_older_than_the_last_applied_one_is_held_as_stale() -> None:
    def verdict(last_applied: datetime | None) -> Verdict | None:
        return hold_verdict(
            seen=3, invalid=0, total_assets=3, deletions=0, live=3, threshold=NO_THRESHOLD,
            snapshot_time=SNAPSHOT, last_applied=last_applied,
        )  # fmt: skip

    stale = verdict(SNAPSHOT + HOUR)
    assert stale is not None and stale.reason_code == "stale_snapshot" and not stale.failed
    assert "would delete" not in stale.reason
    assert verdict(SNAPSHOT) is None and verdict(SNAPSHOT - HOUR) is None and verdict(None) is None


def test_a_stale_snapshot_says_what_it_would_delete_and_the_threshold_it_passes() -> None:
    # One reason code a run: a stale snapshot that would also delete over the threshold says so,
    # or its approval would delete most of the catalogue with no word of it.
    def reason(deletions: int) -> str:
        held = hold_verdict(
            seen=1, invalid=0, total_assets=1, deletions=deletions, live=7,
            threshold=DeletionThreshold(percent=Decimal(20), min_count=5),
            snapshot_time=SNAPSHOT, last_applied=SNAPSHOT + HOUR,
        )  # fmt: skip
        assert held is not None and held.reason_code == "stale_snapshot"
        return held.reason

    assert reason(1).endswith(
        "but it would delete 1 of 7 live assets, even ones a newer snapshot lists"
    )
    assert reason(6).endswith(
        "would delete 6 of 7 live assets, even ones a newer snapshot lists, over the threshold "
        "(more than 20 % and more than 5)"
    )


def test_more_items_than_announced_fails_the_run() -> None:
    plan = plan_for([item("a", SNAPSHOT - HOUR), item("b", SNAPSHOT - HOUR, index=1)], total=1)
    assert plan.failure is not None and plan.failure.reason_code == "parse_error"
    assert plan.hold is None and plan.upserts == []


def test_deleting_over_the_threshold_is_held() -> None:
    # 100 live assets, 20 % and more than 5: 21 deletions are too many.
    stored_assets = live_assets(100)
    keep = [item(s.asset_id, SNAPSHOT - HOUR, index=n) for n, s in enumerate(stored_assets[21:])]
    threshold = DeletionThreshold(percent=Decimal(20), min_count=5)
    plan = plan_for(keep, stored_assets, threshold=threshold)
    assert plan.hold is not None and plan.hold.reason_code == "deletion_threshold"
    assert "21 of 100" in plan.hold.reason
    assert plan.counts.held_deletions == 21
    assert plan.counts.deleted == 0 and plan.counts.updated == 0 and plan.counts.unchanged == 0
    assert plan.upserts == [] and plan.deletions == []


@pytest.mark.parametrize(("stored", "shown"), [("20", "20"), ("20.0", "20"), ("12.50", "12.5")])
def test_the_hold_reason_reads_the_same_whatever_form_the_threshold_was_read_in(
    stored: str, shown: str
) -> None:
    # A feed's threshold comes back from the database as 20.0; a preview's default is 20.
    verdict = hold_verdict(
        seen=10,
        invalid=0,
        total_assets=None,
        deletions=90,
        live=100,
        threshold=DeletionThreshold(percent=Decimal(stored), min_count=5),
        snapshot_time=SNAPSHOT,
    )
    assert verdict is not None
    assert f"(more than {shown} % and more than 5)" in verdict.reason


def test_deleting_just_under_the_threshold_is_applied() -> None:
    stored_assets = live_assets(100)
    keep = [item(s.asset_id, SNAPSHOT - HOUR, index=n) for n, s in enumerate(stored_assets[20:])]
    threshold = DeletionThreshold(percent=Decimal(20), min_count=5)
    plan = plan_for(keep, stored_assets, threshold=threshold)
    assert plan.applies
    assert len(plan.deletions) == 20 and plan.counts.deleted == 20


def test_a_large_share_but_no_more_than_min_count_is_applied() -> None:
    stored_assets = live_assets(6)
    threshold = DeletionThreshold(percent=Decimal(20), min_count=5)
    keep = [item(stored_assets[0].asset_id, SNAPSHOT - HOUR)]
    plan = plan_for(keep, stored_assets, threshold=threshold)
    assert plan.applies and plan.counts.deleted == 5


def test_an_approved_snapshot_skips_the_holds() -> None:
    plan = plan_for([], live_assets(3), check_holds=False)
    assert plan.applies
    assert plan.deletions == ["asset-000", "asset-001", "asset-002"]
    assert plan.counts.deleted == 3 and plan.counts.held_deletions == 0


def test_protected_assets_do_not_count_towards_the_threshold() -> None:
    pushed = [
        stored(f"p{n}", SNAPSHOT - 2 * HOUR, accepted_at=PREVIOUS_RUN + HOUR, source="push")
        for n in range(10)
    ]
    keep = [item("kept", SNAPSHOT - HOUR)]
    threshold = DeletionThreshold(percent=Decimal(20), min_count=5)
    plan = plan_for(keep, [*pushed, stored("kept", SNAPSHOT - HOUR)], threshold=threshold)
    assert plan.applies and plan.deletions == []


# --- properties ---------------------------------------------------------------------------------

IDS = st.sampled_from([f"id-{n}" for n in range(12)])
MOMENTS = st.integers(min_value=-5, max_value=5).map(lambda h: SNAPSHOT + h * HOUR)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[FeedItem], set[str], list[StoredAsset], bool]:
    valid_ids = draw(st.lists(IDS, unique=True, max_size=8))
    invalid_ids = draw(st.sets(IDS, max_size=4))
    items = [
        item(
            asset_id, draw(MOMENTS.filter(lambda m: m <= SNAPSHOT)), draw(st.sampled_from("ab")), n
        )
        for n, asset_id in enumerate(valid_ids)
    ]
    stored_ids = draw(st.lists(IDS, unique=True, max_size=12))
    stored_assets = [
        stored(
            asset_id,
            draw(MOMENTS),
            deleted=draw(st.booleans()),
            accepted_at=draw(MOMENTS),
            source=draw(st.sampled_from(["push", "batch", "feed"])),
        )
        for asset_id in stored_ids
    ]
    return items, invalid_ids, stored_assets, draw(st.booleans())


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_a_plan_never_deletes_an_asset_the_feed_lists(
    scenario: tuple[list[FeedItem], set[str], list[StoredAsset], bool],
) -> None:
    items, invalid_ids, stored_assets, check_holds = scenario
    plan = plan_for(
        items,
        stored_assets,
        invalid_ids=invalid_ids,
        invalid=len(invalid_ids),
        threshold=DeletionThreshold(Decimal(20), 1),
        check_holds=check_holds,
    )
    listed = {i.asset_id for i in items} | invalid_ids
    assert not set(plan.deletions) & listed
    live = {s.asset_id for s in stored_assets if not s.deleted}
    assert set(plan.deletions) <= live
    if plan.applies:
        counted = plan.counts.created + plan.counts.updated + plan.counts.unchanged
        assert counted == len([i for i in items if i.asset_id not in invalid_ids])
        assert plan.counts.deleted == len(plan.deletions)
    else:
        assert plan.upserts == [] and plan.deletions == []
