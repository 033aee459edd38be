"""Applying asset events in one transaction per batch (docs/api.md, "Versions and ordering").

Assets without merge patches (nearly all) go through one guarded set-based merge of the batch's
newest event per asset. Assets that a batch patches, or that keep patches from earlier, are
folded in version order onto their locked rows (`folding`). Either way every event gets its
receipt and every applied change its entry in `asset_changes`, in the same transaction.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

import structlog
from prometheus_client import Counter

from rwasync.platform.db import Database, LockSpace, lock_keys
from rwasync.reconciler import queries
from rwasync.reconciler.folding import apply_folded
from rwasync.reconciler.patch_state import AssetEvent, stale_reason
from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted, Event, ReceiptStatus
from rwasync.schema.versions import event_version, newest_per_key
from rwasync.store import receipts
from rwasync.store.receipts import Decision

log = structlog.get_logger(__name__)

EVENTS = Counter("rwasync_asset_events_total", "Asset events decided", ["type", "outcome"])

AssetChange = AssetUpserted | AssetDeleted
AssetKey = tuple[str, str]


class EventNotApplicable(Exception):
    """An event this service can never apply (wrong type, inconsistent payload): dead-letter it."""


def asset_key(event: AssetEvent) -> AssetKey:
    return (event.provider_id, event.asset_id)


def newest_per_asset(events: Sequence[AssetChange]) -> tuple[list[AssetChange], list[AssetChange]]:
    """The newest event of each asset in a batch, and the ones they supersede."""
    return newest_per_key(events, key=asset_key, order=event_version, identity=lambda e: e.event_id)


def _check(event: Event) -> AssetEvent:
    if not isinstance(event, AssetUpserted | AssetPatched | AssetDeleted):
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


def _key_columns(keys: Sequence[AssetKey]) -> tuple[list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys]


class AssetApplier:
    """Applies a batch of asset events in one transaction; the consumer retries and splits."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def apply(self, events: Sequence[Event]) -> None:
        changes = [_check(e) for e in events]
        keys = list(dict.fromkeys(asset_key(e) for e in changes))
        async with self._db.connection() as conn, conn.transaction():
            await lock_keys(conn, [f"{p}/{a}" for p, a in keys], LockSpace.ASSETS)
            folded_keys = {asset_key(e) for e in changes if isinstance(e, AssetPatched)}
            others = [k for k in keys if k not in folded_keys]
            if others:
                rows = await conn.fetch(queries.ASSETS_WITH_PATCHES, *_key_columns(others))
                folded_keys.update((r["provider_id"], r["asset_id"]) for r in rows)
            plain: list[AssetChange] = []
            folded: list[AssetEvent] = []
            for e in changes:
                if asset_key(e) in folded_keys or isinstance(e, AssetPatched):
                    folded.append(e)
                else:
                    plain.append(e)
            decisions = await self._merge(conn, plain) if plain else []
            if folded:
                decisions.extend(await apply_folded(conn, folded))
            await receipts.record_decisions(conn, decisions)
        for (kind, status), count in Tally((d.type, d.status) for d in decisions).items():
            EVENTS.labels(kind, status).inc(count)
        log.debug("asset events applied", events=len(changes), folded=len(folded))

    async def _merge(self, conn: Any, events: Sequence[AssetChange]) -> list[Decision]:
        newest, superseded = newest_per_asset(events)
        rows = await conn.fetch(queries.APPLY_ASSET_CHANGES, *_columns(newest))
        by_id = {e.event_id: e for e in newest}
        decisions: list[Decision] = []
        for row in rows:
            event = by_id[row["event_id"]]
            outcome = ReceiptStatus(row["outcome"])
            if outcome != ReceiptStatus.STALE_IGNORED and not row["written"]:
                # The classification and the guarded write disagree: only possible if the
                # advisory lock did not hold. Fail the batch rather than record a false receipt.
                raise RuntimeError(f"event {event.event_id} classified {outcome} but not written")
            reason = (
                stale_reason(row["stored_updated_at"])
                if outcome == ReceiptStatus.STALE_IGNORED
                else None
            )
            decisions.append(Decision.of(event, outcome, reason))
        decisions.extend(
            Decision.of(
                e, ReceiptStatus.STALE_IGNORED, "superseded by a newer event in the same batch"
            )
            for e in superseded
        )
        return decisions

    async def note_dead_lettered(self, events: Sequence[Event], reason: str) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
