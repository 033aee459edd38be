"""A run's decisions as events (pure): upserts and deletions for the assets exchange, prices for
the pricing exchange, packed many to a message. Every event of the run counts as accepted at the
snapshot time (docs/api.md, "Versions and ordering").

A price an item carries is published when the item was validated in this run (new, or changed
since the copy accepted last time): with the item's `price.as_of`, else the snapshot time, the
moment the provider asserted it. The pricing service's guard decides whether it is the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from rwasync.feed_poller.comparing import RowPayload
from rwasync.feeds.snapshot import Action, Decision
from rwasync.schema.events import (
    AnyEvent,
    Arrival,
    AssetDeleted,
    AssetUpserted,
    PriceUpdated,
    asset_deleted,
    asset_upserted,
    encode_message,
    message_for,
    price_updated,
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


class MissingDocument(Exception):
    """An upsert was decided for an item whose document was not staged (it can only happen if the
    stored asset changed in a way the version order forbids); the item is skipped and logged."""


# Where an upsert's document goes in its encoded message (see `encode_events`).
_DOCUMENT_SLOT: Final = b'"document":{}'


@dataclass(frozen=True, slots=True)
class Upsert:
    """An upsert event built without its document, and the document's canonical JSON bytes."""

    event: AssetUpserted
    document: bytes


def upsert_event(decision: Decision, run: RunContext) -> Upsert:
    assert decision.row is not None and decision.version_updated_at is not None
    payload = decision.row.payload
    assert isinstance(payload, RowPayload)
    raw = payload.document or payload.stored_document
    if raw is None or decision.row.content_hash is None:
        raise MissingDocument(decision.asset_id)
    event = asset_upserted(
        run.arrival,
        asset_id=decision.asset_id,
        updated_at=decision.version_updated_at,
        accepted_at=run.snapshot_time,
        document={},
        content_hash=bytes(decision.row.content_hash).hex(),
        event_id=decision.event_id,
    )
    return Upsert(event, bytes(raw))


def encode_events(events: list[AnyEvent], documents: list[bytes]) -> tuple[str, bytes]:
    """One message of `events` as (message id, body). Upserts were built with an empty document;
    their documents' canonical JSON (exactly what was hashed) goes into its slot in the encoded
    message, in order, so no document is parsed and serialised again on the way out. The slot
    text cannot occur elsewhere: inside any JSON string its quotes would be escaped."""
    message = message_for(events)
    parts = encode_message(message).split(_DOCUMENT_SLOT)
    if len(parts) != len(documents) + 1:
        raise ValueError(f"{len(parts) - 1} document slots for {len(documents)} documents")
    body = bytearray(parts[0])
    for document, rest in zip(documents, parts[1:], strict=True):
        body += b'"document":' + document + rest
    return str(message.message_id), bytes(body)


def deletion_event(decision: Decision, run: RunContext) -> AssetUpserted | AssetDeleted:
    return asset_deleted(
        run.arrival,
        asset_id=decision.asset_id,
        updated_at=run.snapshot_time,
        accepted_at=run.snapshot_time,
        reason=f"missing from feed {run.feed_id} run {run.run_id}",
    )


def price_event(decision: Decision, run: RunContext) -> PriceUpdated | None:
    """The price the winning item carries, if it was validated in this run."""
    if decision.row is None or decision.action in (Action.DELETE, Action.KEEP, Action.NONE):
        return None
    payload = decision.row.payload
    if not isinstance(payload, RowPayload) or payload.price is None:
        return None
    amount, currency, as_of = payload.price
    return price_updated(
        run.arrival,
        asset_id=decision.asset_id,
        amount=amount,
        currency=currency,
        as_of=as_of or run.snapshot_time,
        accepted_at=run.snapshot_time,
    )
