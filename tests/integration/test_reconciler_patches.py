"""Merge patches against real Postgres: applied under the version guard onto the locked row,
rejected with a reason when there is nothing to patch or the result is invalid, and folded in
version order when older changes arrive late; with the audit and change entries they leave."""

from __future__ import annotations

from typing import Any

import pytest

from rwasync.platform.db import Database
from rwasync.reconciler import patch_state
from rwasync.reconciler.apply import AssetApplier
from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted
from rwasync.schema.timestamps import timestamp_text
from tests.support.events import at, deleted, patched, upserted

pytestmark = pytest.mark.integration

AnyAssetEvent = AssetUpserted | AssetPatched | AssetDeleted


async def _row(db: Database, asset_id: str = "a1") -> dict[str, Any] | None:
    row = await db.fetchrow(
        """SELECT document, deleted, updated_at, event_id, encode(content_hash, 'hex') AS hash,
                  patch_state IS NOT NULL AS keeps_patches
           FROM assets WHERE asset_id = $1""",
        asset_id,
    )
    return dict(row) if row is not None else None


async def _receipt(db: Database, event: AnyAssetEvent) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT status, reason FROM event_receipts WHERE event_id = $1", event.event_id
    )
    assert row is not None
    return row["status"], row["reason"]


async def _changes(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT event_id, event_type, deleted, encode(before_hash, 'hex') AS before_hash,
                  encode(after_hash, 'hex') AS after_hash
           FROM asset_changes ORDER BY xid, change_id"""
    )
    return [dict(r) for r in rows]


async def test_a_patch_merges_onto_the_stored_document(db: Database, provider_id: str) -> None:
    applier = AssetApplier(db)
    base = upserted(provider_id, "a1", at(1), description="old", year_built=1950)
    patch = patched(provider_id, "a1", at(2), {"description": "new", "year_built": None})
    await applier.apply([base])
    await applier.apply([patch])

    row = await _row(db)
    assert row is not None
    assert row["document"]["description"] == "new"
    assert "year_built" not in row["document"]
    assert row["document"]["updated_at"] == "2026-01-01T12:02:00.000000Z"
    assert row["updated_at"] == at(2) and row["event_id"] == patch.event_id
    assert row["keeps_patches"]
    assert await _receipt(db, patch) == ("applied", None)
    first, second = await _changes(db)
    assert (first["event_type"], first["before_hash"]) == ("asset.upserted", None)
    assert second["event_type"] == "asset.patched"
    assert second["before_hash"] == base.payload.content_hash
    assert second["after_hash"] == row["hash"]


async def test_patches_of_unknown_deleted_or_invalid_documents_are_rejected_and_change_nothing(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    unknown = patched(provider_id, "ghost", at(1), {"name": "x"})
    await applier.apply([unknown])
    assert await _row(db, "ghost") is None
    status, reason = await _receipt(db, unknown)
    assert status == "rejected" and reason and "unknown asset" in reason

    await applier.apply([upserted(provider_id, "a1", at(1), rental={"units_total": 2})])
    before = await _row(db)
    invalid = patched(provider_id, "a1", at(2), {"rental": {"units_rented": 3}})
    renaming = patched(provider_id, "a1", at(3), {"id": "other"})
    await applier.apply([invalid])
    await applier.apply([renaming])
    assert await _row(db) == before
    status, reason = await _receipt(db, invalid)
    assert status == "rejected" and reason and "/rental/units_rented" in reason
    status, reason = await _receipt(db, renaming)
    assert status == "rejected" and reason and "/id" in reason
    assert len(await _changes(db)) == 1

    await applier.apply([deleted(provider_id, "a1", at(4))])
    late = patched(provider_id, "a1", at(5), {"name": "x"})
    await applier.apply([late])
    status, reason = await _receipt(db, late)
    assert status == "rejected" and reason and "deleted" in reason


async def test_a_patch_older_than_the_stored_document_is_stale(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(5))])
    old = patched(provider_id, "a1", at(4), {"name": "old"})
    await applier.apply([old])
    assert (await _receipt(db, old))[0] == "stale_ignored"
    # Its reason names the version readers see, a patch's above the base (it named the base's).
    await applier.apply([patched(provider_id, "a1", at(7), {"name": "new"})])
    older = patched(provider_id, "a1", at(3), {"name": "older"})
    await applier.apply([older])
    assert await _receipt(db, older) == (
        "stale_ignored",
        f"a newer or equal version is stored (updated_at {timestamp_text(at(7))})",
    )


async def test_an_older_upsert_arriving_after_a_patch_becomes_its_base(
    db: Database, provider_id: str
) -> None:
    """In version order: U1, U2, P3. Delivered U1, P3, U2: U2 is folded under P3."""
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1), description="one")])
    patch = patched(provider_id, "a1", at(3), {"name": "Patched"})
    await applier.apply([patch])
    late = upserted(provider_id, "a1", at(2), description="two")
    await applier.apply([late])

    row = await _row(db)
    assert row is not None
    assert row["document"]["description"] == "two"
    assert row["document"]["name"] == "Patched"
    assert row["updated_at"] == at(3)
    assert await _receipt(db, late) == ("applied", None)


async def test_an_older_deletion_arriving_after_a_patch_deletes(
    db: Database, provider_id: str
) -> None:
    """In version order: U1, D2, P3 (rejected: deleted). Delivered U1, P3, D2: deleted."""
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1))])
    patch = patched(provider_id, "a1", at(3), {"name": "Patched"})
    await applier.apply([patch])
    await applier.apply([deleted(provider_id, "a1", at(2))])
    row = await _row(db)
    assert row is not None and row["deleted"] and row["updated_at"] == at(2)
    # The patch's receipt says what happened when it arrived; a newer upsert brings it back.
    assert (await _receipt(db, patch))[0] == "applied"
    await applier.apply([upserted(provider_id, "a1", at(2.5), description="again")])
    row = await _row(db)
    assert row is not None and not row["deleted"]
    assert row["document"]["name"] == "Patched" and row["document"]["description"] == "again"


async def test_a_rejected_patch_redelivered_after_its_base_stays_without_effect(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    early = patched(provider_id, "a1", at(2), {"name": "Early"})
    await applier.apply([early])
    base = upserted(provider_id, "a1", at(1))
    await applier.apply([base])
    await applier.apply([early])  # redelivered
    row = await _row(db)
    assert row is not None and row["document"]["name"] != "Early"
    assert (await _receipt(db, early))[0] == "rejected"


async def test_every_patch_of_one_batch_applies_in_version_order(
    db: Database, provider_id: str
) -> None:
    applier = AssetApplier(db)
    batch = [
        patched(provider_id, "a1", at(3), {"description": "third"}),
        upserted(provider_id, "a1", at(1), description="first"),
        patched(provider_id, "a1", at(2), {"description": "second", "name": "Two"}),
    ]
    await applier.apply(batch)
    row = await _row(db)
    assert row is not None
    assert (row["document"]["description"], row["document"]["name"]) == ("third", "Two")
    assert [(await _receipt(db, e))[0] for e in batch] == ["applied"] * 3
    assert len(await _changes(db)) == 3


async def test_patches_beyond_the_kept_window_fold_into_the_base(
    db: Database, provider_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patch_state, "MAX_KEPT_PATCHES", 2)
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1))])
    for minute in (2, 3, 4, 5):
        await applier.apply([patched(provider_id, "a1", at(minute), {"name": f"N{minute}"})])
    state = await db.fetchval("SELECT patch_state FROM assets")
    assert len(state["patches"]) == 2
    assert state["base"]["updated_at"] == "2026-01-01T12:03:00.000000Z"
    too_old = upserted(provider_id, "a1", at(2.5))
    await applier.apply([too_old])
    assert (await _receipt(db, too_old))[0] == "stale_ignored"
    row = await _row(db)
    assert row is not None and row["document"]["name"] == "N5"


async def test_a_duplicate_patch_writes_no_change_entry(db: Database, provider_id: str) -> None:
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1), description="same")])
    again = patched(provider_id, "a1", at(1), {"description": "same"}, accepted_at=at(9))
    await applier.apply([again])
    assert (await _receipt(db, again))[0] == "duplicate"
    assert len(await _changes(db)) == 1
    row = await _row(db)
    assert row is not None and row["event_id"] == again.event_id


async def test_deleting_an_asset_deleted_beside_kept_patches_is_a_duplicate(
    db: Database, provider_id: str
) -> None:
    """As on the plain path: a deletion of a deleted asset only moves the tombstone's version
    (no change entry, `applied_at` and `deleted_at` kept), here where patches are kept."""
    applier = AssetApplier(db)
    await applier.apply([upserted(provider_id, "a1", at(1))])
    await applier.apply([patched(provider_id, "a1", at(3), {"name": "Patched"})])
    await applier.apply([deleted(provider_id, "a1", at(2))])
    row = await _row(db)
    assert row is not None and row["deleted"] and row["keeps_patches"], row
    kept = await db.fetchrow("SELECT applied_at, deleted_at FROM assets")
    entries = len(await _changes(db))
    again = deleted(provider_id, "a1", at(2.5))
    await applier.apply([again])
    assert await _receipt(db, again) == ("duplicate", None)
    assert len(await _changes(db)) == entries
    assert await db.fetchrow("SELECT applied_at, deleted_at FROM assets") == kept
    row = await _row(db)
    assert row is not None and row["deleted"] and row["event_id"] == again.event_id
