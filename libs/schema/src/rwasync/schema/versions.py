"""Which of two changes to an asset is newer, as a pure ordering (docs/api.md, "Versions and
ordering").

A change replaces the stored state only when its version is greater: a later `updated_at` wins;
at equal `updated_at` a deletion beats an upsert; then the later-accepted change wins; and last
the event id, so that two changes accepted at the same instant on two replicas still order the
same everywhere. The reconciler's SQL guard (the `WHERE` of its upsert) implements exactly this
order by comparing the row `(updated_at, is_deletion, accepted_at, event_id)`; Postgres orders
`uuid` values bytewise, which is the order of their lowercase text used here. Keep them in step.
"""

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted
from rwasync.schema.raw_events import RawAssetDeleted, RawAssetPatched, RawAssetUpserted


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """The version of one change; compare with `<`/`>` or `is_newer`. Datetimes must be aware."""

    updated_at: datetime
    is_deletion: bool
    accepted_at: datetime
    event_id: str

    def __post_init__(self) -> None:
        if self.updated_at.tzinfo is None or self.accepted_at.tzinfo is None:
            raise ValueError("Version timestamps must be timezone-aware")
        # The lowercase text of the UUID, so a `UUID` object and its text compare alike.
        object.__setattr__(self, "event_id", str(self.event_id).lower())


def is_newer(incoming: Version, stored: Version | None) -> bool:
    """Whether `incoming` replaces `stored` (anything replaces nothing)."""
    return stored is None or incoming > stored


T = TypeVar("T")


def newest_per_key(
    items: Iterable[T],
    *,
    key: Callable[[T], Hashable],
    order: Callable[[T], Any],
    identity: Callable[[T], Hashable],
) -> tuple[list[T], list[T]]:
    """Reduce a batch to its newest item per `key` (greatest `order`) before a set-based write.

    One upsert statement cannot touch a row twice, and an older item of the same batch could
    never win anyway. Returns (newest per key, in first-seen key order; the items they
    supersede). Repeats of one `identity` (a redelivered event) count once.
    """
    newest: dict[Hashable, T] = {}
    superseded: list[T] = []
    seen: set[Hashable] = set()
    for item in items:
        ident = identity(item)
        if ident in seen:
            continue
        seen.add(ident)
        k = key(item)
        current = newest.get(k)
        if current is None:
            newest[k] = item
        elif order(item) > order(current):
            superseded.append(current)
            newest[k] = item
        else:
            superseded.append(item)
    return list(newest.values()), superseded


def event_version(
    event: AssetUpserted
    | AssetPatched
    | AssetDeleted
    | RawAssetUpserted
    | RawAssetPatched
    | RawAssetDeleted,
) -> Version:
    """The version an asset event carries (a model's or a raw event's alike)."""
    return Version(
        updated_at=event.updated_at,
        is_deletion=isinstance(event, AssetDeleted | RawAssetDeleted),
        accepted_at=event.accepted_at,
        event_id=str(event.event_id),
    )
