"""Asset events with their documents left as the JSON text they were published as: the asset
queue's fast decode (docs/architecture.md, "Decoding asset messages"); and the price queue's, into
plain structs (`decode_price_message`, below).

`decode_asset_message` decodes a broker message with msgspec into `RawAssetUpserted`,
`RawAssetPatched` and `RawAssetDeleted`, whose documents and patches stay text (the reconciler
copies a document into Postgres as it came, and reads only its `id` and `status`). The pydantic
models in `events` stay the contract: the checks below restate theirs, and a test holds the two
equal (tests/unit/schema/test_raw_events.py). Whatever this decoder does not accept, or cannot
vouch for, goes through `decode_message` instead, so that a message is accepted or rejected, with
the same reason, exactly as the models decide, and such a message's events are the models.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from msgspec import Meta, Raw, Struct
from pydantic import TypeAdapter

from rwasync.schema.events import (
    AnyEvent,
    AssetDeleted,
    AssetPatched,
    AssetUpserted,
    EventSource,
    EventType,
    PriceUpdated,
)
from rwasync.schema.messages import MessageDecoder, decode_message

# --- the wire form: what msgspec decodes, constraint for constraint the models' ------------------


class _Wire(Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    pass


class _WireUpsertedPayload(_Wire, frozen=True):
    document: Raw
    content_hash: Annotated[str, Meta(min_length=64, max_length=64)]  # and `_digest`


class _WirePatchedPayload(_Wire, frozen=True):
    patch: Raw


class _WireDeletedPayload(_Wire, frozen=True):
    reason: Annotated[str, Meta(max_length=2000)] | None = None


class _WireEnvelope(_Wire, frozen=True, kw_only=True):
    event_id: uuid.UUID
    provider_id: Annotated[str, Meta(min_length=1, max_length=64)]
    asset_id: Annotated[str, Meta(min_length=1, max_length=128)]
    source: EventSource
    updated_at: str  # `_timestamp`
    accepted_at: str
    received_at: str
    trace_id: Annotated[str, Meta(max_length=128)] = ""
    schema_version: Literal[1] = 1


class _WireEvent(_WireEnvelope, frozen=True, tag_field="type", kw_only=True):
    pass


class _WireUpserted(_WireEvent, frozen=True, tag=EventType.ASSET_UPSERTED.value):
    payload: _WireUpsertedPayload


class _WirePatched(_WireEvent, frozen=True, tag=EventType.ASSET_PATCHED.value):
    payload: _WirePatchedPayload


class _WireDeleted(_WireEvent, frozen=True, tag=EventType.ASSET_DELETED.value):
    payload: _WireDeletedPayload = msgspec.field(default_factory=_WireDeletedPayload)


class _WireMessage(_Wire, frozen=True):
    message_id: uuid.UUID
    events: Annotated[list[_WireUpserted | _WirePatched | _WireDeleted], Meta(min_length=1)]


class _WirePricePayload(_Wire, frozen=True):
    amount: str  # `_amount`
    # The length too: a `$` in Python's patterns also matches before a final newline.
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$", min_length=3, max_length=3)]
    as_of: str  # `_timestamp`


class _WirePrice(_WireEnvelope, frozen=True, kw_only=True):
    # A field, not a tag: msgspec takes a lone tagged struct without its tag, the models do not.
    type: Literal["price.updated"]
    payload: _WirePricePayload


class _WirePriceMessage(_Wire, frozen=True):
    message_id: uuid.UUID
    events: Annotated[list[_WirePrice], Meta(min_length=1)]


class _DocumentHead(Struct, gc=False):
    """What the reconciler reads of a document. Only text or null: anything else (which the
    reconciler rejects or fails on) takes the models' path, to fail there as it always has."""

    id: str | None = None
    status: str | None = None


_MESSAGE_DECODER: Final = msgspec.json.Decoder(_WireMessage)
_PRICE_MESSAGE_DECODER: Final = msgspec.json.Decoder(_WirePriceMessage)
_HEAD_DECODER: Final = msgspec.json.Decoder(_DocumentHead)

# pydantic's JSON parser refuses a document nested about 200 deep (the envelope included) and an
# integer of more than 4,300 digits; msgspec skips over either. Documents within these bounds
# (every document a publisher of ours writes: `jsonsafe` allows a depth of 32 and 100 digits) are
# decoded here; the rest take the models' path.
MAX_RAW_DEPTH: Final = 64
MAX_RAW_DIGITS: Final = 4000
_DIGIT_RUN: Final = re.compile(f"[0-9]{{{MAX_RAW_DIGITS + 1}}}".encode())
_NOT_A_BRACKET: Final = bytes(set(range(256)) - set(b"[{"))
_STRING_OR_BRACKET: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')

# --- the decoded events ------------------------------------------------------------------------


class _Decoded(Struct, frozen=True, gc=False):
    event_id: uuid.UUID
    provider_id: str
    asset_id: str
    source: EventSource
    updated_at: datetime
    accepted_at: datetime
    received_at: datetime
    trace_id: str
    schema_version: int


class RawUpsertedPayload(Struct, frozen=True, gc=False):
    document_json: str  # a JSON object, as published
    content_hash: str
    digest: bytes  # the content hash's bytes
    document_id: str | None  # the document's `id` and `status` (None: absent or null)
    status: str | None


class RawPatchedPayload(Struct, frozen=True, gc=False):
    patch_json: str  # a JSON object, as published


class RawDeletedPayload(Struct, frozen=True, gc=False):
    reason: str | None


class RawAssetUpserted(_Decoded, frozen=True, gc=False):
    type: ClassVar[Literal[EventType.ASSET_UPSERTED]] = EventType.ASSET_UPSERTED
    payload: RawUpsertedPayload


class RawAssetPatched(_Decoded, frozen=True, gc=False):
    type: ClassVar[Literal[EventType.ASSET_PATCHED]] = EventType.ASSET_PATCHED
    payload: RawPatchedPayload


class RawAssetDeleted(_Decoded, frozen=True, gc=False):
    type: ClassVar[Literal[EventType.ASSET_DELETED]] = EventType.ASSET_DELETED
    payload: RawDeletedPayload


class RawPricePayload(Struct, frozen=True, gc=False):
    amount: Decimal
    currency: str
    as_of: datetime


class RawPriceUpdated(_Decoded, frozen=True, gc=False):
    type: ClassVar[Literal[EventType.PRICE_UPDATED]] = EventType.PRICE_UPDATED
    payload: RawPricePayload


RawAssetEvent = RawAssetUpserted | RawAssetPatched | RawAssetDeleted
# What the price queue's consumer hands its applier: ticks as decoded here or, for a message this
# decoder left to pydantic, the models (an event of another type among them is not a tick).
PriceTick = RawPriceUpdated | PriceUpdated
# What the asset queue's consumer hands its applier: the raw events, or (for a message this
# decoder left to pydantic) the models.
ConsumedEvent = RawAssetEvent | AnyEvent


class _NotRaw(ValueError):
    """A message this decoder does not vouch for: the models decide it."""


def decode_asset_message(body: bytes) -> list[ConsumedEvent]:
    """The message's events: raw when this decoder can vouch for every one of them, else the
    models `decode_message` makes (and its MalformedMessage, with pydantic's reason)."""
    try:
        wire = _MESSAGE_DECODER.decode(body)
        return [_decoded(event) for event in wire.events]
    # DecodeError covers msgspec's ValidationError; ValueError: a date that does not exist, text
    # that is not UTF-8, or `_NotRaw`; RecursionError: msgspec's depth limit is the interpreter's.
    except (msgspec.DecodeError, ValueError, RecursionError):
        return list(decode_message(body).events)


# `_Decoded`'s fields, in its order: what every raw event takes before its payload.
_Envelope = tuple[uuid.UUID, str, str, EventSource, datetime, datetime, datetime, str, int]


def _envelope(event: _WireEnvelope) -> _Envelope:
    return (
        event.event_id,
        event.provider_id,
        event.asset_id,
        event.source,
        _timestamp(event.updated_at),
        _timestamp(event.accepted_at),
        _timestamp(event.received_at),
        event.trace_id,
        event.schema_version,
    )


def _decoded(event: _WireUpserted | _WirePatched | _WireDeleted) -> RawAssetEvent:
    envelope = _envelope(event)
    if isinstance(event, _WireUpserted):
        payload = event.payload
        head = _HEAD_DECODER.decode(payload.document)
        text = _object_text(payload.document)
        digest = _digest(payload.content_hash)
        return RawAssetUpserted(
            *envelope,
            RawUpsertedPayload(text, payload.content_hash, digest, head.id, head.status),
        )
    if isinstance(event, _WirePatched):
        return RawAssetPatched(*envelope, RawPatchedPayload(_object_text(event.payload.patch)))
    return RawAssetDeleted(*envelope, RawDeletedPayload(event.payload.reason))


# The shapes (digits as 0) of the timestamps rwasync's publishers write: RFC 3339 with `T`, no or
# six fractional digits, `Z` or an offset. msgspec's own datetime parser rounds a seventh digit
# where pydantic truncates it, and pydantic and `fromisoformat` each accept forms the other does
# not; within these shapes both parse alike (an offset's minutes above 59 aside, checked below).
_TIMESTAMP_SHAPES: Final = frozenset(
    f"0000-00-00T00:00:00{fraction}{zone}".encode()
    for fraction in ("", ".000000")
    for zone in ("Z", "+00:00", "-00:00")
)
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")


@functools.lru_cache(maxsize=4096)  # a batch's events share their arrival's timestamps
def _timestamp(text: str) -> datetime:
    if text.encode().translate(_DIGITS_AS_ZERO) not in _TIMESTAMP_SHAPES:
        raise _NotRaw("a timestamp in another form")
    if text[-3] == ":" and text[-2] > "5":
        raise _NotRaw("an offset's minutes above 59")
    return datetime.fromisoformat(text)


def _digest(content_hash: str) -> bytes:
    """The hash's bytes, from exactly 64 lowercase hex digits (the models' pattern)."""
    digest = bytes.fromhex(content_hash)
    if digest.hex() != content_hash:
        raise _NotRaw("a content hash in another form")
    return digest


def _object_text(raw: Raw) -> str:
    """The text of a raw JSON value that the models would take as a `dict`: an object, in UTF-8
    (msgspec checks the syntax of what it skips, not its encoding), within the bounds above."""
    data = bytes(raw)
    if not data.startswith(b"{"):
        raise _NotRaw("not an object")
    if len(data.translate(None, _NOT_A_BRACKET)) > MAX_RAW_DEPTH and _depth(data) > MAX_RAW_DEPTH:
        raise _NotRaw("nested too deep")
    if len(data) > MAX_RAW_DIGITS and _DIGIT_RUN.search(data) is not None:
        raise _NotRaw("a number too long")
    return data.decode()


def _depth(data: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (brackets within strings skipped)."""
    depth = deepest = 0
    for token in _STRING_OR_BRACKET.finditer(data):
        mark = token.group()
        if mark in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in (b"]", b"}"):
            depth -= 1
    return deepest


# --- price ticks ------------------------------------------------------------------------------

# The amounts our publishers write (`str` of a Decimal without exponent): for these, pydantic's
# Decimal is `Decimal(text)`. Anything else (an exponent, a sign, spaces, a JSON number, other
# digits) takes the models' path.
_PLAIN_AMOUNT: Final = re.compile(r"-?[0-9]{1,60}(?:\.[0-9]{1,60})?")


def decode_price_message(body: bytes) -> list[RawPriceUpdated] | list[AnyEvent]:
    """The message's ticks as `RawPriceUpdated` when this decoder can vouch for every one of
    them, else the models `decode_message` makes (and its MalformedMessage, with pydantic's
    reason). About four times cheaper a tick than the models: no validator chain per field, a
    batch's shared timestamps parsed once."""
    try:
        wire = _PRICE_MESSAGE_DECODER.decode(body)
        return [_price(event) for event in wire.events]
    except (msgspec.DecodeError, ValueError, RecursionError):  # as decode_asset_message
        return list(decode_message(body).events)


def _price(event: _WirePrice) -> RawPriceUpdated:
    payload = event.payload
    return RawPriceUpdated(
        *_envelope(event),
        RawPricePayload(_amount(payload.amount), payload.currency, _timestamp(payload.as_of)),
    )


def _amount(text: str) -> Decimal:
    if _PLAIN_AMOUNT.fullmatch(text) is None:
        raise _NotRaw("an amount in another form")
    return Decimal(text)


# --- back to the models ------------------------------------------------------------------------

_Document: Final = TypeAdapter(dict[str, Any])


def event_model(event: ConsumedEvent | RawPriceUpdated) -> AnyEvent:
    """The contract's model of an event (the models themselves pass through): for dead letters
    and for the reconciler's folding of merge patches. The document is parsed by pydantic, as
    `decode_message` would have parsed it."""
    if not isinstance(
        event, RawAssetUpserted | RawAssetPatched | RawAssetDeleted | RawPriceUpdated
    ):
        return event
    fields = {name: getattr(event, name) for name in event.__struct_fields__ if name != "payload"}
    if isinstance(event, RawPriceUpdated):
        payload = event.payload
        return PriceUpdated.model_validate(
            {
                **fields,
                "payload": {
                    "amount": payload.amount,
                    "currency": payload.currency,
                    "as_of": payload.as_of,
                },
            }
        )
    if isinstance(event, RawAssetUpserted):
        document = _Document.validate_json(event.payload.document_json)
        return AssetUpserted.model_validate(
            {
                **fields,
                "payload": {"document": document, "content_hash": event.payload.content_hash},
            }
        )
    if isinstance(event, RawAssetPatched):
        patch = _Document.validate_json(event.payload.patch_json)
        return AssetPatched.model_validate({**fields, "payload": {"patch": patch}})
    return AssetDeleted.model_validate({**fields, "payload": {"reason": event.payload.reason}})


# The asset queue's decoder, for `rwasync.platform.consumer.EventConsumer`.
ASSET_QUEUE_DECODER: Final[MessageDecoder[ConsumedEvent]] = MessageDecoder(
    decode=decode_asset_message, model=event_model
)

# The price queue's decoder, for `rwasync.platform.consumer.EventConsumer`.
PRICE_QUEUE_DECODER: Final[MessageDecoder[RawPriceUpdated | AnyEvent]] = MessageDecoder(
    decode=decode_price_message, model=event_model
)
