"""One asset's state with merge patches kept above its base, and what one event does to it (pure).

A merge patch does not commute with the changes around it, so the reconciler keeps, for an asset
that has patches, its *base* (the newest upsert or deletion applied) and the patches newer than
it, and derives the visible document by folding them in version order (docs/architecture.md,
"Patches"). An upsert or deletion older than a kept patch but newer than the base becomes the new
base and the patches are folded onto it again; a patch is inserted at its place in version
order. A patch folds only onto a live document that it keeps valid; one that does not is skipped
by the fold (and rejected when it arrives). Older patches than `MAX_KEPT_PATCHES` are folded into
the base for good, so a row stays bounded: an event older than them is then stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from rwasync.schema.asset import AssetInvalid
from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted, ReceiptStatus
from rwasync.schema.patch import patched_document
from rwasync.schema.timestamps import timestamp_text
from rwasync.schema.versions import Version, event_version

AssetEvent = AssetUpserted | AssetPatched | AssetDeleted

# Patches kept above an asset's base; older ones are folded into the base for good.
MAX_KEPT_PATCHES: Final = 64


@dataclass(frozen=True, slots=True)
class Visible:
    """What readers see: the version of the last change that took effect, and the document."""

    version: Version
    source: str
    deleted: bool
    document: dict[str, Any] | None
    content_hash: str | None


@dataclass(frozen=True, slots=True)
class KeptPatch:
    version: Version
    source: str
    patch: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredAsset:
    base: Visible
    patches: tuple[KeptPatch, ...]
    visible: Visible

    @property
    def live_hash(self) -> str | None:
        return None if self.visible.deleted else self.visible.content_hash


def fold(base: Visible, patches: Sequence[KeptPatch], asset_id: str) -> Visible:
    """The visible state: each patch, in version order, onto the live document it keeps valid."""
    state = base
    for kept in patches:
        if state.deleted or state.document is None:
            continue
        try:
            result = patched_document(
                state.document, kept.patch, asset_id=asset_id, accepted_at=kept.version.accepted_at
            )
        except AssetInvalid:
            continue
        state = Visible(kept.version, kept.source, False, result.document, result.content_hash)
    return state


def stored(base: Visible, patches: Sequence[KeptPatch], asset_id: str) -> StoredAsset:
    """A stored asset with at most MAX_KEPT_PATCHES patches, the oldest folded into the base."""
    ordered = sorted(patches, key=lambda p: p.version)
    while len(ordered) > MAX_KEPT_PATCHES:
        oldest = ordered.pop(0)
        folded = fold(base, [oldest], asset_id)
        # Anything older than the folded patch is stale from now on.
        base = replace(folded, version=replace(oldest.version, is_deletion=folded.deleted))
    return StoredAsset(base, tuple(ordered), fold(base, ordered, asset_id))


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one event did: the asset afterwards, its receipt (None: already decided earlier),
    and whether readers see a change (an entry in the audit and the change feed)."""

    asset: StoredAsset | None
    status: ReceiptStatus | None
    reason: str | None = None

    @property
    def changed(self) -> bool:
        return self.status == ReceiptStatus.APPLIED


def _full_state(event: AssetUpserted | AssetDeleted) -> Visible:
    if isinstance(event, AssetDeleted):
        return Visible(event_version(event), str(event.source), True, None, None)
    payload = event.payload
    return Visible(
        event_version(event), str(event.source), False, payload.document, payload.content_hash
    )


def stale_reason(updated_at: datetime) -> str:
    return f"a newer or equal version is stored (updated_at {timestamp_text(updated_at)})"


def deliver(asset: StoredAsset | None, event: AssetEvent, *, decided: bool) -> Delivery:
    """Apply one event onto an asset (None: unknown). `decided`: its receipt is already decided
    (a redelivery), which makes a patch a no-op whatever the store holds now."""
    version = event_version(event)
    if asset is not None and version <= asset.base.version:
        # Named by the version readers see (`_meta.updated_at`), newer than the base's once
        # patches are applied above it.
        return Delivery(
            asset, ReceiptStatus.STALE_IGNORED, stale_reason(asset.visible.version.updated_at)
        )
    if isinstance(event, AssetPatched):
        return _deliver_patch(asset, event, version, decided=decided)
    base = _full_state(event)
    newer = [p for p in asset.patches if p.version > version] if asset is not None else []
    after = stored(base, newer, event.asset_id)
    if isinstance(event, AssetUpserted):
        duplicate = (
            asset is not None and asset.live_hash is not None and asset.live_hash == after.live_hash
        )
    else:  # deleting what is deleted already: only the tombstone's version moves on
        duplicate = asset is not None and asset.visible.deleted
    return Delivery(after, ReceiptStatus.DUPLICATE if duplicate else ReceiptStatus.APPLIED)


def _deliver_patch(
    asset: StoredAsset | None, event: AssetPatched, version: Version, *, decided: bool
) -> Delivery:
    if decided or (asset is not None and any(p.version == version for p in asset.patches)):
        return Delivery(asset, None)
    if asset is None:
        return Delivery(None, ReceiptStatus.REJECTED, "unknown asset: a patch needs a document")
    if "updated_at" not in event.payload.patch:
        return Delivery(asset, ReceiptStatus.REJECTED, "a patch must set updated_at")
    below = fold(asset.base, [p for p in asset.patches if p.version < version], event.asset_id)
    if below.deleted or below.document is None:
        return Delivery(asset, ReceiptStatus.REJECTED, "the asset is deleted: nothing to patch")
    try:
        patched_document(
            below.document,
            event.payload.patch,
            asset_id=event.asset_id,
            accepted_at=event.accepted_at,
        )
    except AssetInvalid as exc:
        return Delivery(asset, ReceiptStatus.REJECTED, f"the patched document is invalid: {exc}")
    kept = KeptPatch(version, str(event.source), event.payload.patch)
    after = stored(asset.base, [*asset.patches, kept], event.asset_id)
    duplicate = asset.live_hash is not None and asset.live_hash == after.live_hash
    return Delivery(after, ReceiptStatus.DUPLICATE if duplicate else ReceiptStatus.APPLIED)


def delivery_order(events: Sequence[AssetEvent]) -> list[AssetEvent]:
    """How one asset's events of a batch are delivered: the newest upsert or deletion first (the
    older ones are then stale, as in a batch without patches), then the rest in version order."""
    ordered = sorted(events, key=event_version)
    full = [e for e in ordered if not isinstance(e, AssetPatched)]
    if not full:
        return ordered
    newest = full[-1]
    return [newest, *(e for e in ordered if e is not newest)]


# --- the row's `patch_state` column ----------------------------------------------------------


def _version_json(version: Version) -> dict[str, Any]:
    return {
        "updated_at": timestamp_text(version.updated_at),
        "deleted": version.is_deletion,
        "accepted_at": timestamp_text(version.accepted_at),
        "event_id": version.event_id,
    }


def _version(data: dict[str, Any]) -> Version:
    return Version(
        updated_at=datetime.fromisoformat(data["updated_at"]),
        is_deletion=bool(data["deleted"]),
        accepted_at=datetime.fromisoformat(data["accepted_at"]),
        event_id=data["event_id"],
    )


def patch_state_json(asset: StoredAsset) -> dict[str, Any] | None:
    """The `patch_state` column: None when no patch is kept (the row is its own base)."""
    if not asset.patches:
        return None
    base = asset.base
    return {
        "base": {
            **_version_json(base.version),
            "source": base.source,
            "document": base.document,
            "content_hash": base.content_hash,
        },
        "patches": [
            {**_version_json(p.version), "source": p.source, "patch": p.patch}
            for p in asset.patches
        ],
    }


def from_row(
    asset_id: str,
    *,
    version: Version,
    source: str,
    document: dict[str, Any] | None,
    content_hash: str | None,
    patch_state: dict[str, Any] | None,
) -> StoredAsset:
    """The stored asset of an `assets` row (its version columns, document and patch state)."""
    visible = Visible(
        version,
        source,
        version.is_deletion,
        None if version.is_deletion else document,
        None if version.is_deletion else content_hash,
    )
    if patch_state is None:
        return StoredAsset(visible, (), visible)
    data = patch_state["base"]
    base = Visible(
        _version(data),
        data["source"],
        bool(data["deleted"]),
        data["document"],
        data["content_hash"],
    )
    patches = tuple(KeptPatch(_version(p), p["source"], p["patch"]) for p in patch_state["patches"])
    return StoredAsset(base, patches, fold(base, patches, asset_id))
