"""Event envelopes: what ingest-api and feed-poller publish and the consumers apply.

An event's `event_id` is assigned once, when the event is accepted, and travels unchanged through
every redelivery. A broker message carries one event or many (`EventMessage`); each event keeps its
own id and receipt. How messages are written and read on the broker: `rwasync.schema.messages`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from rwasync.schema.event_ids import new_event_id

SCHEMA_VERSION: Final = 1


class EventType(StrEnum):
    ASSET_UPSERTED = "asset.upserted"
    ASSET_PATCHED = "asset.patched"
    ASSET_DELETED = "asset.deleted"
    PRICE_UPDATED = "price.updated"


class EventSource(StrEnum):
    PUSH = "push"
    BATCH = "batch"
    FEED = "feed"


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"
    APPLIED = "applied"
    STALE_IGNORED = "stale_ignored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    HELD = "held"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssetUpsertedPayload(_Frozen):
    """The normalised asset document and its content hash (hex SHA-256)."""

    document: dict[str, Any]
    content_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class AssetPatchedPayload(_Frozen):
    """An RFC 7386 JSON Merge Patch of the stored document; it always sets `updated_at`. The
    reconciler applies it onto the stored document under the version guard and validates the
    result (an invalid result, or no live document to patch, is rejected)."""

    patch: dict[str, Any]


class AssetDeletedPayload(_Frozen):
    reason: Annotated[str, Field(max_length=2000)] | None = None


class PriceUpdatedPayload(_Frozen):
    amount: Decimal
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    as_of: AwareDatetime


class _EventBase(_Frozen):
    event_id: uuid.UUID
    provider_id: Annotated[str, Field(min_length=1, max_length=64)]
    asset_id: Annotated[str, Field(min_length=1, max_length=128)]
    source: EventSource
    # The version time: the provider's updated_at (a deletion's deleted_at, a price's as_of;
    # for a feed re-creating a deleted asset, the snapshot time).
    updated_at: AwareDatetime
    # When the event was accepted (ingest-api's 202; a feed item: its feed's timestamp).
    accepted_at: AwareDatetime
    # When rwasync received the request or fetched the feed.
    received_at: AwareDatetime
    trace_id: Annotated[str, Field(max_length=128)] = ""
    schema_version: Literal[1] = SCHEMA_VERSION


class AssetUpserted(_EventBase):
    type: Literal[EventType.ASSET_UPSERTED] = EventType.ASSET_UPSERTED
    payload: AssetUpsertedPayload


class AssetPatched(_EventBase):
    type: Literal[EventType.ASSET_PATCHED] = EventType.ASSET_PATCHED
    payload: AssetPatchedPayload


class AssetDeleted(_EventBase):
    type: Literal[EventType.ASSET_DELETED] = EventType.ASSET_DELETED
    payload: AssetDeletedPayload = AssetDeletedPayload()


class PriceUpdated(_EventBase):
    type: Literal[EventType.PRICE_UPDATED] = EventType.PRICE_UPDATED
    payload: PriceUpdatedPayload


AssetEvent = Annotated[AssetUpserted | AssetPatched | AssetDeleted, Field(discriminator="type")]
Event = Annotated[
    AssetUpserted | AssetPatched | AssetDeleted | PriceUpdated, Field(discriminator="type")
]
# Any one event, as a plain union for annotations.
AnyEvent = AssetUpserted | AssetPatched | AssetDeleted | PriceUpdated


class EventMessage(_Frozen):
    """One broker message: a batch of one or more events with the message's own id."""

    message_id: uuid.UUID
    events: Annotated[list[Event], Field(min_length=1)]


class EventLike(Protocol):
    """What consumers and receipts read of an event, whichever form it was decoded into (the
    models here, or `raw_events`' structs)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def provider_id(self) -> str: ...
    @property
    def asset_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def accepted_at(self) -> datetime: ...
    @property
    def trace_id(self) -> str: ...


class MalformedMessage(Exception):
    """A broker message that is not a valid EventMessage: poison, dead-letter it."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """What every event of one request or one feed run shares: whose it is, how it came, when
    rwasync received it, and the trace that follows it."""

    provider_id: str
    source: EventSource
    received_at: datetime
    trace_id: str = ""


def asset_upserted(
    arrival: Arrival,
    *,
    asset_id: str,
    updated_at: datetime,
    accepted_at: datetime,
    document: dict[str, Any],
    content_hash: str,
    event_id: uuid.UUID | None = None,
) -> AssetUpserted:
    """An upsert of a normalised document (hex `content_hash`), accepted at `accepted_at`."""
    return AssetUpserted(
        event_id=event_id or new_event_id(),
        provider_id=arrival.provider_id,
        asset_id=asset_id,
        source=arrival.source,
        updated_at=updated_at,
        accepted_at=accepted_at,
        received_at=arrival.received_at,
        trace_id=arrival.trace_id,
        payload=AssetUpsertedPayload(document=document, content_hash=content_hash),
    )


def asset_patched(
    arrival: Arrival,
    *,
    asset_id: str,
    updated_at: datetime,
    accepted_at: datetime,
    patch: dict[str, Any],
) -> AssetPatched:
    """A merge patch versioned at its own `updated_at`."""
    return AssetPatched(
        event_id=new_event_id(),
        provider_id=arrival.provider_id,
        asset_id=asset_id,
        source=arrival.source,
        updated_at=updated_at,
        accepted_at=accepted_at,
        received_at=arrival.received_at,
        trace_id=arrival.trace_id,
        payload=AssetPatchedPayload(patch=patch),
    )


def asset_deleted(
    arrival: Arrival,
    *,
    asset_id: str,
    updated_at: datetime,
    accepted_at: datetime,
    reason: str | None = None,
) -> AssetDeleted:
    """A deletion (a tombstone) versioned at `updated_at`."""
    return AssetDeleted(
        event_id=new_event_id(),
        provider_id=arrival.provider_id,
        asset_id=asset_id,
        source=arrival.source,
        updated_at=updated_at,
        accepted_at=accepted_at,
        received_at=arrival.received_at,
        trace_id=arrival.trace_id,
        payload=AssetDeletedPayload(reason=reason),
    )


def price_updated(
    arrival: Arrival,
    *,
    asset_id: str,
    amount: Decimal,
    currency: str,
    as_of: datetime,
    accepted_at: datetime,
) -> PriceUpdated:
    """A price tick, versioned by its `as_of`."""
    return PriceUpdated(
        event_id=new_event_id(),
        provider_id=arrival.provider_id,
        asset_id=asset_id,
        source=arrival.source,
        updated_at=as_of,
        accepted_at=accepted_at,
        received_at=arrival.received_at,
        trace_id=arrival.trace_id,
        payload=PriceUpdatedPayload(amount=amount, currency=currency, as_of=as_of),
    )
