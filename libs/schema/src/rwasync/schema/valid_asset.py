"""A valid asset as the write paths use it, and a fast path for the common shape of one.

`validate_asset(data, now=...)` is `parse_asset` followed by `normalized_canonical`, answered as a
`ValidAsset`: the id, version and price the callers read, the normalised document and its
canonical bytes. Most documents providers send have one common shape (known fields of the
expected JSON types, numbers and timestamps in the forms `fields` reads, text within bounds); for
those, `_common_shape` checks the contract's rules and builds the normalised document directly in
Python, several times cheaper than building and dumping the pydantic models. It reuses the rules'
own helpers (`as_decimal`, `as_integer`, `as_utc_datetime`, `normalize_address`, the URL and
attribute rules), so the two cannot drift apart on what they share.

The fast path only ever accepts. Whatever it does not recognise or cannot vouch for, any document
that is invalid included, raises `_Declined` and goes to `parse_asset` unchanged, so errors keep
their pointers and messages. A differential test holds the two paths equal
(tests/unit/schema/test_valid_asset.py).

Sections: the result and the entry points; the rules, each returning the normalised value; the
document's parts and the document itself, in the model's field order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
import orjson
from pydantic_core import PydanticCustomError

from rwasync.schema.asset import (
    ASSET_ID,
    ASSET_STATUSES,
    DESCRIPTION_MAX_LENGTH,
    DOT_SEGMENT_IDS,
    MAX_ITEMS,
    MEDIA_KINDS,
    NAME_MAX_LENGTH,
    NORMALIZED_OPTIONS,
    PROPERTY_TYPES,
    REGION_MAX_LENGTH,
    YEAR_BUILT_MIN,
    Asset,
    attribute_json,
    attribute_value,
    canonical_json,
    https_url,
    latest_year_built,
    normalized_canonical,
    parse_asset,
    shows_something,
)
from rwasync.schema.chains import normalize_address, normalize_chain
from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.fields import (
    COUNTRY_CODES,
    CURRENCY_CODES,
    MAX_SAFE_INTEGER,
    MAX_TEXT_LENGTH,
    as_decimal,
    as_integer,
    as_utc_datetime,
)
from rwasync.schema.jsonsafe import MalformedJSON, parse_decimal
from rwasync.schema.timestamps import is_timestamp_text, timestamp_text, too_far_ahead

# --- the result and the entry points -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotedPrice:
    """The asset's `price` as validated: per token, with its own `as_of` if it says."""

    amount: Decimal
    currency: str
    as_of: datetime | None


@dataclass(frozen=True, slots=True)
class ValidAsset:
    id: str
    updated_at: datetime
    price: QuotedPrice | None
    document: dict[str, Any]  # `normalized_document`
    canonical: bytes  # its RFC 8785 canonical JSON: what is hashed


def validate_asset(data: Any, *, now: datetime) -> ValidAsset:
    """`parse_asset(data, now=now)` and the normalised document with its canonical bytes, by the
    fast path when it vouches for the document; raises AssetInvalid as `parse_asset` does."""
    valid = common_shape(data, now=now)
    if valid is not None:
        return valid
    return from_model(parse_asset(data, now=now))


def from_model(asset: Asset) -> ValidAsset:
    document, canonical = normalized_canonical(asset)
    price = None
    if asset.price is not None:
        price = QuotedPrice(asset.price.amount, asset.price.currency, asset.price.as_of)
    return ValidAsset(asset.id, asset.updated_at, price, document, canonical)


def common_shape(data: Any, *, now: datetime) -> ValidAsset | None:
    """The ValidAsset `validate_asset` gives, for a valid document of the common shape; None for
    any other document (which `parse_asset` then decides)."""
    if now.tzinfo is None:  # `parse_asset` says why
        return None
    try:
        return _common_shape(data, now)
    except (_Declined, PydanticCustomError, ValueError):
        # a rule's helper refused a value (PydanticCustomError, ValueError): the document is
        # invalid, and only the models word its errors
        return None


# `jsonsafe.loads`'s results from JSON text, in C: ints as int, other numbers as Decimal from
# their literal (through `jsonsafe`'s own hook, which refuses a literal of over 100 digits).
# msgspec raises on everything loads refuses except nesting over `MAX_DEPTH` levels and integers
# of over 100 digits, neither of which a document of the common shape can hold: its deepest
# value is a media item's field, and its rules refuse every integer of over 100 digits (an
# attribute's through `as_decimal`, the others by their bounds).
_JSON_DECODER: Final = msgspec.json.Decoder(float_hook=parse_decimal)


def common_shape_json(text: str | bytes, *, now: datetime) -> ValidAsset | None:
    """`common_shape(jsonsafe.loads(text), now=now)`, cheaper: None for text that `loads` might
    refuse or read otherwise (it then decides), and for any document `common_shape` declines."""
    try:
        data = _JSON_DECODER.decode(text)
    # DecodeError: malformed JSON; MalformedJSON: a long number; UnicodeError: invalid UTF-8 or
    # a lone surrogate in text; RecursionError: msgspec's depth limit is the interpreter's
    except (msgspec.DecodeError, MalformedJSON, UnicodeError, RecursionError):
        return None
    return common_shape(data, now=now)


class _Declined(Exception):
    """Not a document of the common shape, or not a valid one."""


# --- the rules, each returning the normalised value ---------------------------------------------


def _text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str:
    if type(value) is not str or len(value) > limit or "\x00" in value:
        raise _Declined
    return value


def _region(value: Any) -> str:
    return _text(value, REGION_MAX_LENGTH)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if type(value) is not str or value not in choices:
            raise _Declined
        return value

    return check


def _code(codes: frozenset[str]) -> Callable[[Any], str]:
    """An ISO code in any case, stored uppercase (as `fields._code_check`)."""

    def check(value: Any) -> str:
        if type(value) is not str:
            raise _Declined
        code = value.upper() if value.isascii() else value  # as `fields._code_check`
        if code not in codes:
            raise _Declined
        return code

    return check


_country = _code(COUNTRY_CODES)
_currency = _code(CURRENCY_CODES)


# Decimal text in plain notation without leading zeros, as providers are advised to send it.
# Normalised, it only loses its fraction's trailing zeros (and a `-` before zero); every other
# number takes `as_decimal` and `normalize_decimal`.
_PLAIN_DECIMAL: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{1,40})?")


def _decimal(
    value: Any, low: int, high: int | None = None, *, above_low: bool = False
) -> tuple[Decimal, str]:
    """The number (as `as_decimal` reads it) within its bounds, and its normalised text."""
    if type(value) is str and _PLAIN_DECIMAL.fullmatch(value) is not None:
        number = Decimal(value)
        text = value.rstrip("0").rstrip(".") if "." in value else value
        if text == "-0":
            text = "0"
    else:
        number = as_decimal(value)
        text = normalize_decimal(number)
    if number < low or (above_low and number == low) or (high is not None and number > high):
        raise _Declined
    return number, text


def _integer(value: Any, low: int, high: int) -> int:
    number = as_integer(value)
    if not low <= number <= high:
        raise _Declined
    return number


def _timestamp(value: Any, now: datetime) -> tuple[datetime, str]:
    """A provider's timestamp (`fields._provider_datetime`): text only, as JSON sends it; and its
    normalised text."""
    if type(value) is not str:
        raise _Declined
    moment = as_utc_datetime(value)
    if too_far_ahead(moment, now):
        raise _Declined
    return moment, value if is_timestamp_text(value) else timestamp_text(moment)


def _https(value: Any) -> str:
    return https_url(_text(value))


def _fields(value: Any, rules: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """An object of only known fields, each given (not null) one checked by its rule; in the
    model's field order, as pydantic dumps it."""
    if type(value) is not dict or not value.keys() <= rules.keys():
        raise _Declined
    normalized = {}
    for name, rule in rules.items():
        item = value.get(name)
        if item is not None:
            normalized[name] = rule(item)
    return normalized


# --- the document's parts, and the document ----------------------------------------------------

_ADDRESS_RULES: Final = {
    "line1": _text,
    "line2": _text,
    "city": _text,
    "region": _region,
    "postal_code": _text,
    "country": _country,
}
_LEGAL_RULES: Final = {"status": _text, "jurisdiction": _text, "entity_name": _text}
_MEDIA_RULES: Final = {"url": _https, "kind": _one_of(MEDIA_KINDS), "title": _text}
_LOCATION_FIELDS: Final = frozenset({"lat", "lon"})
_TOKEN_FIELDS: Final = frozenset(
    {"symbol", "chain", "contract_address", "total_supply", "decimals"}
)
_AMOUNT_FIELDS: Final = frozenset({"amount", "currency", "as_of"})
_RENTAL_FIELDS: Final = frozenset(
    {"gross_yearly", "net_yearly", "currency", "occupancy_rate", "units_total", "units_rented"}
)
_AREA_FIELDS: Final = frozenset({"value", "unit"})
_AREA_UNITS: Final = ("sqft", "m2")
_ASSET_FIELDS: Final = frozenset(Asset.model_fields)


def _object(value: Any, names: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or not value.keys() <= names:
        raise _Declined
    return value


def _location(value: Any) -> dict[str, Any]:
    location = _object(value, _LOCATION_FIELDS)
    return {
        "lat": _decimal(location.get("lat"), -90, 90)[1],
        "lon": _decimal(location.get("lon"), -180, 180)[1],
    }


def _token(value: Any) -> dict[str, Any]:
    token = _object(value, _TOKEN_FIELDS)
    normalized: dict[str, Any] = {}
    symbol = token.get("symbol")
    if symbol is not None:
        if type(symbol) is not str or not 1 <= len(symbol) <= 64 or not symbol.isprintable():
            raise _Declined
        normalized["symbol"] = symbol
    chain = token.get("chain")
    if type(chain) is not str:
        raise _Declined
    normalized["chain"] = chain = normalize_chain(chain)
    normalized["contract_address"] = normalize_address(chain, _text(token.get("contract_address")))
    supply = token.get("total_supply")
    if supply is not None:
        normalized["total_supply"] = str(_integer(supply, 1, 10**30))
    decimals = token.get("decimals")
    if decimals is not None:
        normalized["decimals"] = _integer(decimals, 0, 36)
    return normalized


def _dated_amount(value: Any, now: datetime) -> tuple[dict[str, Any], QuotedPrice]:
    dated = _object(value, _AMOUNT_FIELDS)
    amount, amount_text = _decimal(dated.get("amount"), 0, above_low=True)
    currency = _currency(dated.get("currency"))
    normalized = {"amount": amount_text, "currency": currency}
    as_of = dated.get("as_of")
    if as_of is not None:
        as_of, normalized["as_of"] = _timestamp(as_of, now)
    return normalized, QuotedPrice(amount, currency, as_of)


def _rental(value: Any) -> dict[str, Any]:
    rental = _object(value, _RENTAL_FIELDS)
    normalized: dict[str, Any] = {}
    for name in ("gross_yearly", "net_yearly"):
        amount = rental.get(name)
        if amount is not None:
            normalized[name] = _decimal(amount, 0)[1]
    currency = rental.get("currency")
    if currency is not None:
        normalized["currency"] = _currency(currency)
    elif normalized:  # an amount needs its currency
        raise _Declined
    rate = rental.get("occupancy_rate")
    if rate is not None:
        normalized["occupancy_rate"] = _decimal(rate, 0, 1)[1]
    total = rental.get("units_total")
    if total is not None:
        normalized["units_total"] = total = _integer(total, 0, MAX_SAFE_INTEGER)
    rented = rental.get("units_rented")
    if rented is not None:
        normalized["units_rented"] = rented = _integer(rented, 0, MAX_SAFE_INTEGER)
        if total is not None and rented > total:
            raise _Declined
    return normalized


def _area(value: Any) -> dict[str, Any]:
    area = _object(value, _AREA_FIELDS)
    unit = area.get("unit")
    if type(unit) is not str or unit not in _AREA_UNITS:
        raise _Declined
    return {"value": _decimal(area.get("value"), 0, above_low=True)[1], "unit": unit}


def _media(value: Any) -> list[dict[str, Any]]:
    if type(value) is not list or len(value) > MAX_ITEMS:
        raise _Declined
    media = [_fields(item, _MEDIA_RULES) for item in value]
    if not all("url" in item for item in media):
        raise _Declined
    return media


def _attributes(value: Any) -> dict[str, Any]:
    if type(value) is not dict or len(value) > MAX_ITEMS:
        raise _Declined
    normalized = {}
    for key, item in value.items():
        if type(key) is not str or not key or len(key) > MAX_TEXT_LENGTH or "\x00" in key:
            raise _Declined
        scalar = attribute_value(item)
        if scalar is not None:
            normalized[key] = attribute_json(scalar)
    return normalized


_status = _one_of(ASSET_STATUSES)
_property_type = _one_of(PROPERTY_TYPES)


def _common_shape(data: Any, now: datetime) -> ValidAsset:
    if type(data) is not dict or not data.keys() <= _ASSET_FIELDS:
        raise _Declined
    asset_id = data.get("id")
    if type(asset_id) is not str or ASSET_ID.fullmatch(asset_id) is None:
        raise _Declined
    if asset_id in DOT_SEGMENT_IDS:  # the model says why
        raise _Declined
    updated_at, updated_text = _timestamp(data.get("updated_at"), now)
    name = _text(data.get("name"), NAME_MAX_LENGTH)
    if not name or not shows_something(name):  # the model says why
        raise _Declined
    document: dict[str, Any] = {
        "id": asset_id,
        "updated_at": updated_text,
        "status": _status(data.get("status")),
        "name": name,
    }
    optional = data.get
    if (description := optional("description")) is not None:
        document["description"] = _text(description, DESCRIPTION_MAX_LENGTH)
    if (property_type := optional("property_type")) is not None:
        document["property_type"] = _property_type(property_type)
    if (address := optional("address")) is not None:
        document["address"] = _fields(address, _ADDRESS_RULES)
    if (location := optional("location")) is not None:
        document["location"] = _location(location)
    if (token := optional("token")) is not None:
        document["token"] = _token(token)
    price = None
    if (quoted := optional("price")) is not None:
        document["price"], price = _dated_amount(quoted, now)
    if (valuation := optional("valuation")) is not None:
        document["valuation"], _ = _dated_amount(valuation, now)
    if (rental := optional("rental")) is not None:
        document["rental"] = _rental(rental)
    if (legal := optional("legal")) is not None:
        document["legal"] = _fields(legal, _LEGAL_RULES)
    if (area := optional("area")) is not None:
        document["area"] = _area(area)
    if (year_built := optional("year_built")) is not None:
        document["year_built"] = _integer(year_built, YEAR_BUILT_MIN, latest_year_built(now))
    if (media := optional("media")) is not None:
        document["media"] = _media(media)
    if (attributes := optional("attributes")) is not None:
        document["attributes"] = _attributes(attributes)
    try:
        written = orjson.dumps(document, option=NORMALIZED_OPTIONS)
    except orjson.JSONEncodeError:  # text that is not valid Unicode: the models refuse it
        raise _Declined from None
    # Sorted keys give RFC 8785's order when every key is ASCII (`normalized_canonical`).
    canonical = written if written.isascii() else canonical_json(document)
    return ValidAsset(asset_id, updated_at, price, document, canonical)
