"""Builders for events and documents used across test tiers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rwasync.schema.asset import content_hash_hex, normalized_document, parse_asset
from rwasync.schema.events import (
    AssetDeleted,
    AssetPatched,
    AssetPatchedPayload,
    AssetUpserted,
    AssetUpsertedPayload,
    EventSource,
    PriceUpdated,
    PriceUpdatedPayload,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def asset_doc(asset_id: str, updated_at: datetime, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": asset_id,
        "updated_at": updated_at.isoformat(),
        "status": "active",
        "name": f"{asset_id} Main St, Detroit, MI 48201",
    }
    doc.update(extra)
    return doc


def large_asset_doc(asset_id: str) -> dict[str, Any]:
    """A valid asset of about 0.8 MB: near the contract's most (1 MiB a PUT body): 100
    attributes and 100 media items, each text near its 2,000-character limit."""
    return {
        "id": asset_id,
        "updated_at": "2025-05-30T09:15:00Z",
        "status": "active",
        "name": "n",
        "attributes": {f"{i:04d}" + "k" * 1996: "v" * 2000 for i in range(100)},
        "media": [
            {"url": f"https://example.com/{i}/" + "p" * 1970, "kind": "image", "title": "t" * 2000}
            for i in range(100)
        ],
    }


def upserted(
    provider_id: str,
    asset_id: str,
    updated_at: datetime,
    *,
    accepted_at: datetime | None = None,
    source: EventSource = EventSource.PUSH,
    version_updated_at: datetime | None = None,
    **extra: Any,
) -> AssetUpserted:
    document = normalized_document(parse_asset(asset_doc(asset_id, updated_at, **extra)))
    return AssetUpserted(
        event_id=uuid.uuid4(),
        provider_id=provider_id,
        asset_id=asset_id,
        source=source,
        updated_at=version_updated_at or updated_at,
        accepted_at=accepted_at or updated_at,
        received_at=accepted_at or updated_at,
        payload=AssetUpsertedPayload(document=document, content_hash=content_hash_hex(document)),
    )


def deleted(
    provider_id: str,
    asset_id: str,
    deleted_at: datetime,
    *,
    accepted_at: datetime | None = None,
    source: EventSource = EventSource.PUSH,
) -> AssetDeleted:
    return AssetDeleted(
        event_id=uuid.uuid4(),
        provider_id=provider_id,
        asset_id=asset_id,
        source=source,
        updated_at=deleted_at,
        accepted_at=accepted_at or deleted_at,
        received_at=accepted_at or deleted_at,
    )


def patched(
    provider_id: str,
    asset_id: str,
    updated_at: datetime,
    patch: dict[str, Any],
    *,
    accepted_at: datetime | None = None,
    source: EventSource = EventSource.PUSH,
) -> AssetPatched:
    """A merge patch that sets `updated_at` (as ingest-api publishes it) and `patch`."""
    return AssetPatched(
        event_id=uuid.uuid4(),
        provider_id=provider_id,
        asset_id=asset_id,
        source=source,
        updated_at=updated_at,
        accepted_at=accepted_at or updated_at,
        received_at=accepted_at or updated_at,
        payload=AssetPatchedPayload(patch={"updated_at": updated_at.isoformat(), **patch}),
    )


def price(
    provider_id: str,
    asset_id: str,
    amount: str,
    as_of: datetime,
    *,
    accepted_at: datetime | None = None,
    currency: str = "USD",
) -> PriceUpdated:
    return PriceUpdated(
        event_id=uuid.uuid4(),
        provider_id=provider_id,
        asset_id=asset_id,
        source=EventSource.PUSH,
        updated_at=as_of,
        accepted_at=accepted_at or as_of,
        received_at=accepted_at or as_of,
        payload=PriceUpdatedPayload(amount=Decimal(amount), currency=currency, as_of=as_of),
    )
