"""Events on the broker: messages encoded from the models or built straight as their wire form
(what ingest-api accepts most), and decoded back into the models.

A message's JSON is what pydantic's serialiser writes for an `EventMessage`; orjson writes it
from the fields, and pydantic reads it back (`decode_message`), so a consumer validates every
event it takes whoever wrote it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar

import orjson
from pydantic import ValidationError

from rwasync.schema.errors import field_errors
from rwasync.schema.events import (
    SCHEMA_VERSION,
    AnyEvent,
    Arrival,
    Event,
    EventMessage,
    EventType,
    MalformedMessage,
)

# An event as it goes on the wire: the fields `EventMessage` decodes, as JSON-ready values, in the
# order of the models' fields. Built straight from validated values wherever ingest-api accepts
# prices and asset upserts (singly or thousands at once) and for every event of a feed run:
# building the models only to dump them again cost more than validating the ticks, and the
# consumers validate every message they decode all the same.
WireEvent = dict[str, Any]


def event_wire(
    arrival: Arrival,
    event_type: EventType,
    *,
    event_id: str | uuid.UUID,
    asset_id: str,
    updated_at: datetime,
    accepted_at: datetime,
    payload: dict[str, Any],
) -> WireEvent:
    return {
        "event_id": event_id,
        "provider_id": arrival.provider_id,
        "asset_id": asset_id,
        "source": arrival.source,
        "updated_at": updated_at,
        "accepted_at": accepted_at,
        "received_at": arrival.received_at,
        "trace_id": arrival.trace_id,
        "schema_version": SCHEMA_VERSION,
        "type": event_type,
        "payload": payload,
    }


def price_updated_wire(
    arrival: Arrival,
    *,
    event_id: str | uuid.UUID,
    asset_id: str,
    amount: Decimal,
    currency: str,
    as_of: datetime,
    accepted_at: datetime,
) -> WireEvent:
    """`price_updated(...)` on the wire, for values already validated as a `Price` is (and an
    `event_id` from `new_event_ids`)."""
    return event_wire(
        arrival,
        EventType.PRICE_UPDATED,
        event_id=event_id,
        asset_id=asset_id,
        updated_at=as_of,
        accepted_at=accepted_at,
        payload={"amount": amount, "currency": currency, "as_of": as_of},
    )


def asset_upserted_wire(
    arrival: Arrival,
    *,
    event_id: str | uuid.UUID,
    asset_id: str,
    updated_at: datetime,
    accepted_at: datetime,
    document: dict[str, Any] | orjson.Fragment,
    content_hash: str,
) -> WireEvent:
    """`asset_upserted(...)` on the wire, for a document already validated and normalised (a
    `ValidAsset`'s: no value orjson cannot write; or its canonical JSON as an `orjson.Fragment`,
    spliced in as it was hashed). Building the model only to dump it again cost pydantic a walk
    of the whole document."""
    return event_wire(
        arrival,
        EventType.ASSET_UPSERTED,
        event_id=event_id,
        asset_id=asset_id,
        updated_at=updated_at,
        accepted_at=accepted_at,
        payload={"document": document, "content_hash": content_hash},
    )


def wire_event(event: AnyEvent) -> WireEvent:
    """A validated event's fields on the wire."""
    return {**event.__dict__, "payload": event.payload.__dict__}


def message_for(events: Sequence[AnyEvent]) -> EventMessage:
    """A message for these events: a single event's message id is its event id."""
    message_id = events[0].event_id if len(events) == 1 else uuid.uuid4()
    return EventMessage(message_id=message_id, events=list(events))


def encode_message(message: EventMessage) -> bytes:
    """The message as JSON: orjson straight from the validated models' fields writes the bytes
    pydantic's JSON serialiser writes (UUIDs and enums as text, timestamps in RFC 3339 with `Z`
    for UTC, decimals as strings) about seven times faster, since a document's values need no
    type inference. A document orjson cannot write (an integer beyond 64 bits) goes through
    pydantic's serialiser."""
    try:
        return _dumps(message.message_id, [wire_event(e) for e in message.events])
    except orjson.JSONEncodeError:
        return message.model_dump_json().encode()


def encode_wire_events(events: Sequence[WireEvent]) -> tuple[str, bytes]:
    """One message of `events` as (message id, body), the bytes `encode_message` writes for the
    same events (the same fallback included); a single event's message id is its event id."""
    message_id = str(events[0]["event_id"]) if len(events) == 1 else str(uuid.uuid4())
    try:
        return message_id, _dumps(message_id, events)
    except orjson.JSONEncodeError:
        message = EventMessage.model_validate({"message_id": message_id, "events": events})
        return message_id, message.model_dump_json().encode()


def encode_wire_messages(
    events: Sequence[WireEvent], max_bytes: int
) -> list[tuple[str, bytes, Sequence[WireEvent]]]:
    """`encode_wire_events` as (message id, body, its events) for as many messages as keep each
    body within `max_bytes` (a message of one event goes whatever its size), in the events'
    order: the events are halved until each part fits. Only an oversized message is encoded
    again."""
    message_id, body = encode_wire_events(events)
    if len(body) <= max_bytes or len(events) == 1:
        return [(message_id, body, events)]
    half = len(events) // 2
    return encode_wire_messages(events[:half], max_bytes) + encode_wire_messages(
        events[half:], max_bytes
    )


def _dumps(message_id: uuid.UUID | str, events: Sequence[WireEvent]) -> bytes:
    return orjson.dumps(
        {"message_id": message_id, "events": events},
        default=_decimal_text,
        option=orjson.OPT_UTC_Z,
    )


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# A malformed message's reason names this many of its errors (an operator reads it in a table).
REASON_ERRORS: Final = 5


def malformed_reason(exc: ValidationError) -> str:
    """What is wrong with a message, for a dead letter's reason: each error's pointer and plain
    message, without pydantic's documentation URLs or the input it quotes (a whole document)."""
    count = exc.error_count()
    listed = "; ".join(
        f"{error.pointer or '/'}: {error.message}" for error in field_errors(exc)[:REASON_ERRORS]
    )
    more = f"; and {count - REASON_ERRORS} more" if count > REASON_ERRORS else ""
    return f"{count} validation error{'' if count == 1 else 's'} for EventMessage: {listed}{more}"


def decode_message(body: bytes) -> EventMessage:
    try:
        return EventMessage.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedMessage(malformed_reason(exc)) from exc


E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class MessageDecoder(Generic[E]):
    """How a consumer reads its queue's messages: `decode` a body into its events (raising
    MalformedMessage, with the models' reason, for one they reject), and the contract's `model` of
    such an event (what a dead letter carries)."""

    decode: Callable[[bytes], Sequence[E]]
    model: Callable[[E], AnyEvent]


def _events(body: bytes) -> Sequence[Event]:
    return decode_message(body).events


def _itself(event: Event) -> AnyEvent:
    return event


# The models themselves (pricing's queue; the asset queue has `raw_events.ASSET_QUEUE_DECODER`).
MODEL_DECODER: Final[MessageDecoder[Event]] = MessageDecoder(decode=_events, model=_itself)
