"""Validating what providers send, the one way both the writes and `/v1/validate/*` use: an
asset at a path or from a body, a batch envelope and each of its items (none larger than a push
of it alone may be), a deletion, a price. Each raises `AssetInvalid` listing every problem with
its JSON pointer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar

import msgspec
from pydantic import BaseModel

from rwasync.ingest_api.models import (
    MAX_ASSET_BATCH,
    AssetBatch,
    Deletion,
    PriceBatch,
    PriceItem,
)
from rwasync.schema.asset import ASSET_ID, DOT_SEGMENT_IDS, DOT_SEGMENT_RULE
from rwasync.schema.errors import MAX_ITEM_BYTES, AssetInvalid, FieldError, item_too_large
from rwasync.schema.fields import MAX_OBJECT_KEYS, validate_contract, validate_each
from rwasync.schema.jsonsafe import dumps
from rwasync.schema.valid_asset import ValidAsset, common_shape_json, validate_asset

ASSET_ID_RULE: Final = "must be 1-128 characters of letters, digits, '.', '_', ':' and '-'"

Envelope = TypeVar("Envelope", bound=BaseModel)


def path_id_errors(path_id: str) -> list[FieldError]:
    if path_id in DOT_SEGMENT_IDS:  # (percent-encoded: a client removes them written plainly)
        return [FieldError("/id", f"the asset id in the URL {DOT_SEGMENT_RULE}")]
    if ASSET_ID.fullmatch(path_id):
        return []
    return [FieldError("/id", f"the asset id in the URL {ASSET_ID_RULE}")]


def asset_at_path(body: Any, path_id: str, now: datetime) -> ValidAsset:
    """The asset a `PUT /v1/assets/{id}` describes: the body's `id`, when given, must be the
    path's; when absent, it is the path's."""
    errors = path_id_errors(path_id)
    if isinstance(body, dict):
        if "id" not in body:
            if len(body) < MAX_OBJECT_KEYS:  # else its error counts the keys the client sent
                body = {**body, "id": path_id}
        elif body["id"] != path_id and not errors:
            errors.append(FieldError("/id", f"must equal the asset id in the URL ({path_id})"))
    try:
        asset = validate_asset(body, now=now)
    except AssetInvalid as exc:
        # One complaint about /id is enough: the path's (or the mismatch) says what to fix.
        id_reported = bool(errors)
        errors += [e for e in exc.errors if not (id_reported and e.pointer == "/id")]
    if errors:
        raise AssetInvalid(errors)
    return asset


def body_asset(
    body: bytes, parse: Callable[[], Any], now: datetime, path_id: str | None = None
) -> ValidAsset:
    """The asset a body describes (at `path_id`, as `asset_at_path`, when given): read straight
    from the body's text when it is a valid document of the common shape (`common_shape_json`),
    else from `parse()` (the body's JSON, which raises for text that is not) by the full rules,
    which also word every error."""
    fast = common_shape_json(body, now=now) if body else None
    if fast is not None and (path_id is None or fast.id == path_id):
        return fast
    document = parse()
    if path_id is None:
        return validate_asset(document, now=now)
    return asset_at_path(document, path_id, now)


def envelope(model: type[Envelope], body: Any) -> Envelope:
    """A batch envelope (shape only: its items are validated one by one)."""
    return validate_contract(model, body, envelope=True)


# The keys of the batches' arrays of items (`AssetBatch.assets`, `PriceBatch.prices`): a body's
# JSON fault inside one of their elements names it (`jsonsafe.loads(body, items=...)`).
ASSETS: Final = "assets"
PRICES: Final = "prices"


def asset_batch(body: Any) -> list[Any]:
    return list(envelope(AssetBatch, body).assets)


def price_batch(body: Any) -> list[Any]:
    return list(envelope(PriceBatch, body).prices)


def item_id(item: Any, key: str = "id") -> str | None:
    """The id an item claims, for its result line (even when the item is invalid)."""
    if isinstance(item, dict):
        value = item.get(key)
        if isinstance(value, str):
            return value[:128]
    return None


def price_item(item: Any, now: datetime) -> PriceItem:
    return validate_contract(PriceItem, item, now=now)


@dataclass(frozen=True)
class DeletionRequest:
    reason: str | None
    deleted_at: datetime


def deletion(body: Any, path_id: str, received_at: datetime) -> DeletionRequest:
    """A `DELETE`'s body (`{}` when none was sent); the version defaults to the receipt time."""
    errors = path_id_errors(path_id)
    parsed = Deletion()
    try:
        parsed = validate_contract(Deletion, body, now=received_at)
    except AssetInvalid as exc:
        errors += exc.errors
    if errors:
        raise AssetInvalid(errors)
    return DeletionRequest(parsed.reason, parsed.deleted_at or received_at)


@dataclass(slots=True)
class Checked:
    """One batch item after validation: its value, or the errors that rejected it. (Not frozen:
    a frozen dataclass cost a microsecond an item to build, a fifth of a tick's validation.)"""

    index: int
    id: str | None
    value: Any = None
    errors: list[FieldError] | None = None


# Items refused before validation, by index, with their errors (`too_large`).
Refused = Mapping[int, list[FieldError]]
NONE_REFUSED: Final[Refused] = MappingProxyType({})


def check_items(
    items: list[Any],
    validate: Callable[[Any], Any],
    id_key: str = "id",
    refused: Refused = NONE_REFUSED,
) -> list[Checked]:
    """Each item validated on its own, in request order: a bad item never blocks the others.
    The `refused` ones are rejected with their errors, not validated."""
    checked = []
    for index, item in enumerate(items):
        errors = refused.get(index)
        if errors is not None:
            checked.append(Checked(index, item_id(item, id_key), errors=errors))
            continue
        try:
            checked.append(Checked(index, item_id(item, id_key), value=validate(item)))
        except AssetInvalid as exc:
            checked.append(Checked(index, item_id(item, id_key), errors=exc.errors))
    return checked


def check_assets(items: list[Any], now: datetime, refused: Refused = NONE_REFUSED) -> list[Checked]:
    return check_items(items, lambda item: validate_asset(item, now=now), refused=refused)


# msgspec frames a batch's envelope and array in C, each item as its exact bytes, building no
# value: what `too_large` measures. A repeated key counts its last value, as `jsonsafe.loads`.
_ENVELOPE: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS: Final = msgspec.json.Decoder(list[msgspec.Raw])


def too_large(body: bytes, key: str, items: list[Any], limit: int, what: str) -> Refused:
    """The items of the batch `body` (its array `key`, read as `items`) larger than `limit` bytes
    as the body carries them, each with the error that rejects it: no item of a batch may be
    larger than a push of it alone may be (`what` the item is: an asset, a price)."""
    if len(body) <= limit:  # no item is larger than the body (nearly every batch)
        return NONE_REFUSED
    sizes = _item_sizes(body, key)
    if sizes is None or len(sizes) != len(items):
        # Text msgspec does not frame as `loads` read it (a byte order mark): the items as
        # written again, compactly, which is at most their size as sent.
        sizes = [len(dumps(item)) for item in items]
    return {
        index: [item_too_large(size, limit, what)]
        for index, size in enumerate(sizes)
        if size > limit
    }


def _item_sizes(body: bytes, key: str) -> list[int] | None:
    try:
        array = _ENVELOPE.decode(body).get(key)
        return None if array is None else [len(item) for item in _ITEMS.decode(array)]
    # DecodeError: not an envelope with that array; ValueError: text that is not UTF-8;
    # RecursionError: msgspec's depth limit is the interpreter's
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None


class _PlainBatch(msgspec.Struct, forbid_unknown_fields=True):
    assets: list[msgspec.Raw]


_PLAIN_BATCH: Final = msgspec.json.Decoder(_PlainBatch)


# A batch body over this many bytes is checked in a worker thread (`off_the_loop`).
OFF_LOOP_BYTES: Final = 256 * 1024


async def off_the_loop(check: Callable[[], list[Checked]], size: int) -> list[Checked]:
    """`check()`, a batch's validation, run in a worker thread when its body is over
    OFF_LOOP_BYTES, so that the event loop answers other requests meanwhile: 5,000 items of 100
    errors each take seconds of CPU, and the process used to answer nothing else for 8 s (a
    trial). The thread gives the loop the interpreter at least every 5 ms."""
    if size <= OFF_LOOP_BYTES:
        return check()
    return await asyncio.to_thread(check)


def checked_batch(
    body: bytes, parse: Callable[[], Any], now: datetime, *, max_item_bytes: int = MAX_ITEM_BYTES
) -> list[Checked]:
    """A batch body's items, each validated on its own (`check_assets(asset_batch(parse()))`),
    an item over `max_item_bytes` rejected for that; raises AssetInvalid for a bad envelope. A
    batch of 1 to MAX_ASSET_BATCH valid documents of the common shape, none too large, is read
    without building the body's JSON: msgspec frames the envelope and `common_shape_json` reads
    each item from its text (for ~1.4 KB documents about a quarter less CPU). Any other body
    takes the full path, which decides and words every error."""
    checked = _common_batch(body, now, max_item_bytes)
    if checked is not None:
        return checked
    items = asset_batch(parse())
    return check_assets(items, now, too_large(body, ASSETS, items, max_item_bytes, "asset"))


def _common_batch(body: bytes, now: datetime, max_item_bytes: int) -> list[Checked] | None:
    try:
        items = _PLAIN_BATCH.decode(body).assets
    # DecodeError: not this envelope (or not JSON); ValueError: text that is not UTF-8;
    # RecursionError: msgspec's depth limit is the interpreter's
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if not 0 < len(items) <= MAX_ASSET_BATCH:
        return None
    checked = []
    for index, item in enumerate(items):
        if len(item) > max_item_bytes:
            return None
        asset = common_shape_json(item, now=now)
        if asset is None:
            return None
        checked.append(Checked(index, asset.id, value=asset))
    return checked


def checked_prices(
    body: bytes, parse: Callable[[], Any], now: datetime, *, max_item_bytes: int = MAX_ITEM_BYTES
) -> list[Checked]:
    """A price batch body's ticks, each validated on its own (`check_prices`), a tick over
    `max_item_bytes` rejected for that; raises AssetInvalid for a bad envelope."""
    items = price_batch(parse())
    return check_prices(items, now, too_large(body, PRICES, items, max_item_bytes, "price"))


def check_prices(items: list[Any], now: datetime, refused: Refused = NONE_REFUSED) -> list[Checked]:
    """As `check_items` with `price_item`, the valid ticks validated together (a batch holds up to
    10,000, and one validation call per tick cost as much as the validation)."""
    outcomes: list[Any]
    if refused:
        kept = [item for index, item in enumerate(items) if index not in refused]
        validated = iter(validate_each(PriceItem, kept, now=now))
        outcomes = [
            AssetInvalid(refused[index]) if index in refused else next(validated)
            for index in range(len(items))
        ]
    else:
        outcomes = validate_each(PriceItem, items, now=now)
    return [
        Checked(index, item_id(item, "asset_id"), errors=outcome.errors)
        if isinstance(outcome, AssetInvalid)
        else Checked(index, item_id(item, "asset_id"), value=outcome)
        for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True))
    ]
