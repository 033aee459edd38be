"""From a run's plan to broker messages (pure): many events per message, upserts first, then
deletions; every event of the run counts as accepted at the snapshot time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from rwasync.feed_poller.snapshot import Plan, Upsert
from rwasync.schema.events import (
    Arrival,
    AssetDeleted,
    AssetUpserted,
    EventMessage,
    asset_deleted,
    asset_upserted,
    message_for,
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every event of one run shares."""

    feed_id: str
    run_id: str
    # The version time of deletions and the acceptance instant of every event.
    snapshot_time: datetime
    # Whose feed, fetched when, traced by the run id.
    arrival: Arrival


def _upserted(upsert: Upsert, run: RunContext) -> AssetUpserted | AssetDeleted:
    return asset_upserted(
        run.arrival,
        asset_id=upsert.item.asset_id,
        updated_at=upsert.version_updated_at,
        accepted_at=run.snapshot_time,
        document=upsert.item.document,
        content_hash=upsert.item.content_hash.hex(),
        event_id=upsert.event_id,
    )


def _deleted(asset_id: str, run: RunContext) -> AssetUpserted | AssetDeleted:
    return asset_deleted(
        run.arrival,
        asset_id=asset_id,
        updated_at=run.snapshot_time,
        accepted_at=run.snapshot_time,
        reason=f"missing from feed {run.feed_id} run {run.run_id}",
    )


def plan_messages(plan: Plan, run: RunContext, events_per_message: int) -> Iterator[EventMessage]:
    """The plan's messages, built one at a time as they are asked for."""
    for start in range(0, len(plan.upserts), events_per_message):
        chunk = plan.upserts[start : start + events_per_message]
        yield message_for([_upserted(upsert, run) for upsert in chunk])
    for start in range(0, len(plan.deletions), events_per_message):
        chunk_ids = plan.deletions[start : start + events_per_message]
        yield message_for([_deleted(asset_id, run) for asset_id in chunk_ids])
