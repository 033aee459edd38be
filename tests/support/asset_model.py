"""A reference model of the documented apply semantics, written independently of the reconciler
(it keeps the set of events that took effect and folds all of them, where the reconciler keeps a
base and the patches above it): the in-order result, and what each delivery decides.

- `fold(events)`: the state after applying `events` one by one in version order: an upsert sets
  the document, a deletion deletes, a patch applies onto a live document it keeps valid (else it
  has no effect). The state's version is the last event that took effect.
- `Model.deliver(batch)`: one batch as the reconciler delivers it: per asset the newest upsert or
  deletion first, then the rest in version order; an event already decided is a no-op; an event
  not newer than the newest upsert or deletion kept is stale; a patch of an asset with no row,
  or that finds no live document below it, or that would make it invalid, is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rwasync.schema.asset import AssetInvalid
from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted
from rwasync.schema.patch import patched_document
from rwasync.schema.versions import Version, event_version

AssetEvent = AssetUpserted | AssetPatched | AssetDeleted


@dataclass(frozen=True)
class State:
    version: Version
    deleted: bool
    document: dict[str, Any] | None
    content_hash: str | None

    @property
    def live_hash(self) -> str | None:
        return None if self.deleted else self.content_hash


def _patch(state: State | None, event: AssetPatched) -> State | None:
    """The state a patch makes, or None when it cannot apply onto `state`."""
    if state is None or state.deleted or state.document is None:
        return None
    if "updated_at" not in event.payload.patch:
        return None
    try:
        result = patched_document(
            state.document,
            event.payload.patch,
            asset_id=event.asset_id,
            accepted_at=event.accepted_at,
        )
    except AssetInvalid:
        return None
    return State(event_version(event), False, result.document, result.content_hash)


def fold(events: Iterable[AssetEvent]) -> State | None:
    """The in-order result of one asset's events (None: no row)."""
    state: State | None = None
    for event in sorted({e.event_id: e for e in events}.values(), key=event_version):
        if isinstance(event, AssetUpserted):
            payload = event.payload
            state = State(event_version(event), False, payload.document, payload.content_hash)
        elif isinstance(event, AssetDeleted):
            state = State(event_version(event), True, None, None)
        else:
            state = _patch(state, event) or state
    return state


@dataclass
class Model:
    """The receipts the documented semantics give for a sequence of batches."""

    kept: dict[tuple[str, str], list[AssetEvent]] = field(default_factory=dict)
    decided: dict[str, str] = field(default_factory=dict)

    def deliver(self, batch: Sequence[AssetEvent]) -> None:
        by_asset: dict[tuple[str, str], dict[str, AssetEvent]] = {}
        for e in batch:
            by_asset.setdefault((e.provider_id, e.asset_id), {}).setdefault(str(e.event_id), e)
        for key, events in by_asset.items():
            ordered = sorted(events.values(), key=event_version)
            full = [e for e in ordered if not isinstance(e, AssetPatched)]
            if full:
                ordered.remove(full[-1])
                ordered.insert(0, full[-1])
            for event in ordered:
                if str(event.event_id) not in self.decided:
                    self.decided[str(event.event_id)] = self._decide(key, event)

    def _decide(self, key: tuple[str, str], event: AssetEvent) -> str:
        kept = self.kept.setdefault(key, [])
        version = event_version(event)
        bases = [event_version(e) for e in kept if not isinstance(e, AssetPatched)]
        if bases and version <= max(bases):
            return "stale_ignored"
        before = fold(kept)
        if isinstance(event, AssetPatched):
            below = fold(e for e in kept if event_version(e) < version)
            if not bases or _patch(below, event) is None:
                return "rejected"
        kept.append(event)
        after = fold(kept)
        if isinstance(event, AssetDeleted):
            # deleting what is deleted already: only the tombstone's version moves on
            duplicate = before is not None and before.live_hash is None
        else:
            duplicate = (
                before is not None
                and after is not None
                and before.live_hash is not None
                and before.live_hash == after.live_hash
            )
        return "duplicate" if duplicate else "applied"
