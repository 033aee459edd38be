"""The path of assets with merge patches: read their rows locked, deliver each event onto the
stored state in `patch_state.delivery_order` (pure), and write rows, changes and receipts back in
the caller's transaction. Never a read-modify-write across transactions: the rows are locked
(`FOR UPDATE`, under the batch's advisory locks) from the read until the commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rwasync.reconciler import queries
from rwasync.reconciler.patch_state import (
    AssetEvent,
    StoredAsset,
    deliver,
    delivery_order,
    from_row,
    patch_state_json,
)
from rwasync.schema.events import AssetPatched
from rwasync.schema.versions import Version
from rwasync.store.receipts import Decision


@dataclass
class _Folding:
    """One asset while its events are delivered: what it was, what it becomes, what changed."""

    asset: StoredAsset | None
    # The document a tombstone keeps for `include_deleted` reads: the last live one seen.
    kept_document: dict[str, Any] | None = None
    kept_hash: str | None = None
    touched: bool = False
    written: bool = False
    changes: list[list[Any]] = field(default_factory=list)


def _stored(row: asyncpg.Record) -> _Folding:
    version = Version(row["updated_at"], row["deleted"], row["accepted_at"], row["event_id"])
    asset = from_row(
        row["asset_id"],
        version=version,
        source=row["source"],
        document=row["document"],
        content_hash=row["content_hash"],
        patch_state=row["patch_state"],
    )
    return _Folding(asset, row["document"], row["content_hash"])


async def apply_folded(conn: asyncpg.Connection, events: Sequence[AssetEvent]) -> list[Decision]:
    """Deliver these events (all of assets on the folding path) and write the results."""
    by_asset: dict[tuple[str, str], dict[object, AssetEvent]] = {}
    for e in events:
        by_asset.setdefault((e.provider_id, e.asset_id), {}).setdefault(e.event_id, e)
    keys = list(by_asset)
    rows = await conn.fetch(queries.LOCK_STORED_ASSETS, [k[0] for k in keys], [k[1] for k in keys])
    state = {key: _Folding(None) for key in keys}
    state.update({(r["provider_id"], r["asset_id"]): _stored(r) for r in rows})
    patch_ids = [e.event_id for e in events if isinstance(e, AssetPatched)]
    decided = (
        {str(r["event_id"]) for r in await conn.fetch(queries.DECIDED_EVENTS, patch_ids)}
        if patch_ids
        else set()
    )
    decisions: list[Decision] = []
    for key, of_asset in by_asset.items():
        folding = state[key]
        for event in delivery_order(list(of_asset.values())):
            before = folding.asset
            delivery = deliver(before, event, decided=str(event.event_id) in decided)
            if delivery.status is None:
                continue
            decisions.append(Decision.of(event, delivery.status, delivery.reason))
            if delivery.asset is before or delivery.asset is None:
                continue
            folding.asset, folding.written = delivery.asset, True
            visible = delivery.asset.visible
            if not visible.deleted:
                folding.kept_document, folding.kept_hash = visible.document, visible.content_hash
            if delivery.changed:
                folding.touched = True
                folding.changes.append(
                    [
                        event.event_id,
                        str(event.type),
                        str(event.source),
                        event.provider_id,
                        event.asset_id,
                        visible.version.updated_at,
                        visible.deleted,
                        before.live_hash if before is not None else None,
                        None if visible.deleted else visible.content_hash,
                    ]
                )
    await _write(conn, [(key, f) for key, f in state.items() if f.written])
    return decisions


def _transpose(rows: list[list[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


async def _write(conn: asyncpg.Connection, written: list[tuple[tuple[str, str], _Folding]]) -> None:
    if not written:
        return
    rows: list[list[Any]] = []
    for (provider_id, asset_id), folding in written:
        assert folding.asset is not None
        visible = folding.asset.visible
        rows.append(
            [
                provider_id,
                asset_id,
                visible.version.updated_at,
                visible.deleted,
                visible.version.accepted_at,
                visible.version.event_id,
                visible.source,
                folding.kept_document if visible.deleted else visible.document,
                folding.kept_hash if visible.deleted else visible.content_hash,
                folding.touched,
                patch_state_json(folding.asset),
            ]
        )
    await conn.execute(queries.WRITE_FOLDED_ASSETS, *_transpose(rows))
    changes = [c for _, folding in written for c in folding.changes]
    if changes:
        await conn.execute(queries.RECORD_CHANGES, *_transpose(changes))
