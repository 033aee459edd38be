"""Applying asset events: keep the newest version per asset in the batch, then one guarded
set-based merge, and one receipt per event, all in one transaction (docs/api.md, "Versions and
ordering")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from prometheus_client import Counter

from rwasync.platform.db import Database, LockSpace, lock_keys
from rwasync.reconciler import queries
from rwasync.schema.events import AssetDeleted, AssetUpserted, Event, ReceiptStatus
from rwasync.schema.timestamps import timestamp_text
from rwasync.schema.versions import event_version, newest_per_key
from rwasync.store import receipts
from rwasync.store.receipts import Decision

log = structlog.get_logger(__name__)

EVENTS = Counter("rwasync_asset_events_total", "Asset events decided", ["type", "outcome"])

AssetChange = AssetUpserted | AssetDeleted


class EventNotApplicable(Exception):
    """An event this service can never apply (wrong type, inconsistent payload): dead-letter it."""


def newest_per_asset(events: Sequence[AssetChange]) -> tuple[list[AssetChange], list[AssetChange]]:
    """The newest event of each asset in a batch, and the ones they supersede."""
    return newest_per_key(
        events,
        key=lambda e: (e.provider_id, e.asset_id),
        order=event_version,
        identity=lambda e: e.event_id,
    )


def _check(event: Event) -> AssetChange:
    if not isinstance(event, AssetUpserted | AssetDeleted):
        raise EventNotApplicable(f"{event.type} does not belong on the asset queue")
    if isinstance(event, AssetUpserted) and event.payload.document.get("id") != event.asset_id:
        raise EventNotApplicable("document id differs from the event's asset_id")
    return event


def _columns(events: Sequence[AssetChange]) -> list[list[Any]]:
    upserts = [e if isinstance(e, AssetUpserted) else None for e in events]
    return [
        [e.provider_id for e in events],
        [e.asset_id for e in events],
        [e.updated_at for e in events],
        [u is None for u in upserts],
        [e.accepted_at for e in events],
        [e.event_id for e in events],
        [str(e.source) for e in events],
        [u.payload.document if u else None for u in upserts],
        [bytes.fromhex(u.payload.content_hash) if u else None for u in upserts],
        [u.payload.document.get("status") if u else None for u in upserts],
    ]


def _stale_reason(stored_updated_at: Any) -> str:
    stored = timestamp_text(stored_updated_at) if stored_updated_at is not None else "?"
    return f"a newer or equal version is stored (updated_at {stored})"


class AssetApplier:
    """Applies a message's asset events in one transaction; the consumer retries and splits."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def apply(self, events: Sequence[Event]) -> None:
        changes = [_check(e) for e in events]
        newest, superseded = newest_per_asset(changes)
        decisions: list[Decision] = []
        async with self._db.connection() as conn, conn.transaction():
            await lock_keys(
                conn, [f"{e.provider_id}/{e.asset_id}" for e in newest], LockSpace.ASSETS
            )
            rows = await conn.fetch(queries.APPLY_ASSET_CHANGES, *_columns(newest))
            by_id = {e.event_id: e for e in newest}
            for row in rows:
                event = by_id[row["event_id"]]
                outcome = ReceiptStatus(row["outcome"])
                reason = (
                    _stale_reason(row["stored_updated_at"]) if outcome == "stale_ignored" else None
                )
                decisions.append(Decision.of(event, outcome, reason))
            decisions.extend(
                Decision.of(
                    e, ReceiptStatus.STALE_IGNORED, "superseded by a newer event in the same batch"
                )
                for e in superseded
            )
            await receipts.record_decisions(conn, decisions)
        for d in decisions:
            EVENTS.labels(d.type, d.status).inc()
        log.debug("asset events applied", events=len(changes), written=len(newest))

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
