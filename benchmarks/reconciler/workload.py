"""The benchmark's events, built as ingest-api would publish them (many per message), without
running pydantic per event so that building 100,000 of them costs seconds, not minutes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from rwasync.schema.asset import content_hash_hex, normalized_document, parse_asset
from rwasync.schema.event_ids import new_event_id
from rwasync.schema.timestamps import timestamp_text

# A document of realistic size (~1 KB normalised): address, token, price, rental, media.
TEMPLATE: dict[str, Any] = {
    "status": "active",
    "description": "Three-bedroom single-family home, renovated kitchen, tenant in place. " * 3,
    "property_type": "single_family",
    "address": {
        "line1": "18900 Mansfield St",
        "city": "Detroit",
        "region": "MI",
        "postal_code": "48235",
        "country": "US",
    },
    "location": {"lat": "42.4301", "lon": "-83.1838"},
    "token": {
        "symbol": "REALTOKEN-S-18900-MANSFIELD-ST-DETROIT-MI",
        "chain": "gnosis",
        "contract_address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "total_supply": 1000,
        "decimals": 18,
    },
    "price": {"amount": "52.10", "currency": "USD"},
    "rental": {"gross_yearly": "13200", "currency": "USD", "units_total": 1, "units_rented": 1},
    "year_built": 1925,
    "media": [{"url": "https://example.com/photo.jpg", "kind": "image"}],
}


@dataclass(frozen=True)
class Workload:
    """Events as broker message bodies, and the columns of their `accepted` receipts."""

    bodies: list[bytes]
    event_ids: list[uuid.UUID]
    asset_ids: list[str]
    accepted_at: list[datetime]
    documents: list[dict[str, Any]]
    hashes: list[str]
    updated_at: datetime


def build(provider_id: str, tag: str, count: int, per_message: int) -> Workload:
    updated_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    template = normalized_document(
        parse_asset({"id": "x", "updated_at": updated_at.isoformat(), "name": "x", **TEMPLATE})
    )
    start = datetime.now(UTC) - timedelta(minutes=30)
    stamp = timestamp_text(updated_at)
    events: list[dict[str, Any]] = []
    workload = Workload([], [], [], [], [], [], updated_at)
    for i in range(count):
        asset_id = f"bench-{tag}-{i}"
        document = {**template, "id": asset_id, "name": f"{i} Bench St, Detroit, MI"}
        digest = content_hash_hex(document)
        event_id = new_event_id()
        accepted = start + timedelta(microseconds=i)
        workload.event_ids.append(event_id)
        workload.asset_ids.append(asset_id)
        workload.accepted_at.append(accepted)
        workload.documents.append(document)
        workload.hashes.append(digest)
        events.append(
            {
                "event_id": str(event_id),
                "provider_id": provider_id,
                "asset_id": asset_id,
                "source": "batch",
                "updated_at": stamp,
                "accepted_at": timestamp_text(accepted),
                "received_at": timestamp_text(accepted),
                "trace_id": "",
                "schema_version": 1,
                "type": "asset.upserted",
                "payload": {"document": document, "content_hash": digest},
            }
        )
        if len(events) == per_message or i == count - 1:
            message = {"message_id": str(uuid.uuid4()), "events": events}
            workload.bodies.append(orjson.dumps(message))
            events = []
    return workload
