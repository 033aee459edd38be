"""The asset document, schema version 1: validation, normalised form and content hash.

`parse_asset` turns what a provider sent (a dict from `jsonsafe.loads`) into an `Asset` or raises
`AssetInvalid` listing every problem with its JSON pointer. `normalized_document` is the form that
is stored, served and hashed: two documents that mean the same thing normalise to the same dict,
so `content_hash` tells a real change from a re-send. `normalized_canonical` gives the document
and its canonical bytes together, more cheaply: the per-item path of feed runs and batches.

Sections: field types and their checks; the document (its models); operations (parse,
normalise, canonical JSON, hash, JSON Schema). The nested models also validate merge patches:
`patch.py` derives copies with every field optional, so a field validator here must let `None`
through.
"""

import copy
import functools
import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

import orjson
import rfc8785
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from rwasync.schema.chains import CHAIN_ALIASES, CHAINS, normalize_address, normalize_chain
from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.errors import (
    NO_NUL_PATTERN,
    PATTERN_MESSAGES,
    AssetInvalid,
    FieldError,
    json_pointer,
)
from rwasync.schema.fields import (
    AS_DECIMAL,
    AS_INTEGER,
    DECIMAL_AS_TEXT,
    MAX_SAFE_INTEGER,
    MAX_TEXT_LENGTH,
    AwareTimestamp,
    ContractModel,
    Count,
    CountryCode,
    CurrencyCode,
    Money,
    NonNegativeDecimal,
    Text,
    as_decimal,
    integer_schema,
    invalid,
    validate_contract,
    validation_now,
)

__all__ = [
    "ASSET_STATUSES",
    "MEDIA_KINDS",
    "PROPERTY_TYPES",
    "Address",
    "Area",
    "Asset",
    "AssetId",
    "AssetInvalid",
    "AssetPrice",
    "AttributeScalar",
    "AwareTimestamp",
    "CurrencyCode",
    "FieldError",
    "Legal",
    "Location",
    "Media",
    "Money",
    "Rental",
    "Token",
    "Valuation",
    "asset_json_schema",
    "attribute_json",
    "canonical_json",
    "content_hash",
    "content_hash_hex",
    "json_pointer",
    "normalize_decimal",
    "normalized_canonical",
    "normalized_document",
    "parse_asset",
]

# --- field types and their checks ----------------------------------------------------------------

SCHEMA_ID: Final = "https://rwasync.dev/v1/schema/asset.json"
MAX_ITEMS: Final = 100

AssetStatus = Literal["active", "inactive", "sold", "delisted", "coming_soon"]
PropertyType = Literal[
    "single_family", "multi_family", "condo", "commercial", "land", "mixed_use", "other"
]
MediaKind = Literal["image", "document", "video"]
AreaUnit = Literal["sqft", "m2"]
ASSET_STATUSES: Final[tuple[str, ...]] = get_args(AssetStatus)
PROPERTY_TYPES: Final[tuple[str, ...]] = get_args(PropertyType)
MEDIA_KINDS: Final[tuple[str, ...]] = get_args(MediaKind)

ASSET_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]+$"
PATTERN_MESSAGES[ASSET_ID_PATTERN] = "may contain only letters, digits, '.', '_', ':' and '-'"
ASSET_ID_MAX_LENGTH: Final = 128
# The whole id rule as one pattern (`fullmatch`), for checks made outside the models.
ASSET_ID: Final = re.compile(rf"[A-Za-z0-9._:-]{{1,{ASSET_ID_MAX_LENGTH}}}")
NAME_MAX_LENGTH: Final = 300
DESCRIPTION_MAX_LENGTH: Final = 20_000
REGION_MAX_LENGTH: Final = 100

# Ids the character rule lets through that no URL can carry: HTTP clients (and aiohttp) remove
# the dot segments `.` and `..` from a path, so `/v1/assets/..` reached another resource and
# such an asset could be pushed and listed but never read (investor trial).
DOT_SEGMENT_IDS: Final = frozenset({".", ".."})
DOT_SEGMENT_RULE: Final = "must not be '.' or '..', which URLs cannot carry as a path segment"


def _not_dot_segment(value: str) -> str:
    if value in DOT_SEGMENT_IDS:
        raise invalid("asset_id", DOT_SEGMENT_RULE)
    return value


AssetId = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=ASSET_ID_MAX_LENGTH, pattern=ASSET_ID_PATTERN),
    AfterValidator(_not_dot_segment),
]


# Categories that show nothing alone: controls, format characters (a zero-width space, a byte
# order mark, a direction mark), unassigned code points, and marks that only modify the
# character before them (a combining acute, a variation selector, the grapheme joiner).
_UNSEEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cn", "Mn", "Me"})
# Letters and symbols drawn blank: the Hangul fillers and the braille blank (hostile trial).
_BLANK_CHARACTERS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def shows_something(text: str) -> bool:
    """Whether the text has a character that shows: not only spaces, characters of
    `_UNSEEN_CATEGORIES` and `_BLANK_CHARACTERS`. Such characters within visible text stay (a
    zero-width non-joiner is part of Persian spelling, a combining mark of many)."""
    return any(
        not c.isspace()
        and c not in _BLANK_CHARACTERS
        and unicodedata.category(c) not in _UNSEEN_CATEGORIES
        for c in text
    )


def _shows_something(value: str) -> str:
    if not shows_something(value):
        raise invalid("string_blank", "must not be blank: investors would see no name")
    return value


AssetName = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NO_NUL_PATTERN),
    AfterValidator(_shows_something),
]
Description = Annotated[
    str, Strict(), StringConstraints(max_length=DESCRIPTION_MAX_LENGTH, pattern=NO_NUL_PATTERN)
]
Region = Annotated[
    str, Strict(), StringConstraints(max_length=REGION_MAX_LENGTH, pattern=NO_NUL_PATTERN)
]


def _printable(value: str) -> str:
    if not value.isprintable():
        raise invalid("string_printable", "must contain only printable characters")
    return value


TokenSymbol = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)
]


def _chain(value: str) -> str:
    try:
        return normalize_chain(value)
    except ValueError as exc:
        raise invalid("chain", str(exc)) from None


Chain = Annotated[
    str,
    Strict(),
    AfterValidator(_chain),
    Field(json_schema_extra={"enum": [*CHAINS, *CHAIN_ALIASES]}),
]
# Integers beyond 2^53 travel as strings in the normalised document, so no reader loses digits.
TotalSupply = Annotated[
    int,
    Field(gt=0, le=10**30),
    AS_INTEGER,
    PlainSerializer(str, return_type=str, when_used="json"),
    integer_schema(exclusiveMinimum=0, maximum=10**30),
]
TokenDecimals = Annotated[
    int, Field(ge=0, le=36), AS_INTEGER, integer_schema(minimum=0, maximum=36)
]
Latitude = Annotated[Decimal, Field(ge=-90, le=90), AS_DECIMAL, DECIMAL_AS_TEXT]
Longitude = Annotated[Decimal, Field(ge=-180, le=180), AS_DECIMAL, DECIMAL_AS_TEXT]
Fraction = Annotated[Decimal, Field(ge=0, le=1), AS_DECIMAL, DECIMAL_AS_TEXT]


YEAR_BUILT_MIN: Final = 1600


def latest_year_built(now: datetime) -> int:
    """The latest `year_built` accepted at the clock `now`: next year + 5."""
    return now.astimezone(UTC).year + 1 + 5


def _not_too_new(year: int, info: ValidationInfo) -> int:
    latest = latest_year_built(validation_now(info))
    if year > latest:
        raise invalid("year_built", f"must be at most {latest} (next year + 5)")
    return year


YearBuilt = Annotated[
    int,
    Field(ge=YEAR_BUILT_MIN),
    AS_INTEGER,
    AfterValidator(_not_too_new),
    integer_schema(f"{YEAR_BUILT_MIN} to next year + 5", minimum=YEAR_BUILT_MIN),
]


# The common shape, which the checks below accept without exception: an https scheme in any
# case, a host of letters, digits, dots and hyphens (so `urlsplit` finds a non-empty hostname and
# nothing to refuse), an optional port, then printable ASCII without spaces. Anything else takes
# the full walk.
_PLAIN_HTTPS_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]://[A-Za-z0-9.-]+(?::[0-9]*)?(?:[/?#][!-~]*)?")


def https_url(value: str) -> str:
    if _PLAIN_HTTPS_URL.fullmatch(value) is not None:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise invalid("url_parsing", "must be a valid https:// URL") from None
    if parts.scheme.lower() != "https":
        raise invalid("url_scheme", "must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        # investors read these: a provider's credentials must not reach them
        raise invalid("url_parsing", "must not carry credentials (user:password@)")
    # An ASCII string that is printable and has no space holds no whitespace either (the other
    # ASCII whitespace characters are not printable); only other text needs the character walk.
    plain = value.isascii() and value.isprintable() and " " not in value
    if not host or (not plain and any(char.isspace() or not char.isprintable() for char in value)):
        raise invalid("url_parsing", "must be a valid https:// URL")
    return value


HttpsUrl = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN),
    AfterValidator(https_url),
    Field(json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]://"}),
]

AttributeKey = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN),
]
AttributeScalar = str | int | Decimal | bool | None


def attribute_value(value: Any) -> AttributeScalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise invalid("string_too_long", f"must be at most {MAX_TEXT_LENGTH} characters")
        if "\x00" in value:
            raise invalid("string_nul", "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid("string_unicode", "must be valid Unicode text") from None
        return value
    if isinstance(value, int | float | Decimal):
        number = as_decimal(value)  # bounds the digits of ints and decimals alike
        return value if isinstance(value, int) else number
    raise invalid("attribute_type", "must be a string, number, boolean or null")


AttributeValue = Annotated[
    AttributeScalar,
    PlainValidator(attribute_value, json_schema_input_type=str | int | float | bool | None),
]


def attribute_json(value: str | int | Decimal | bool) -> str | int | bool:
    """Numbers written like decimals elsewhere, so `50`, `50.0` and `5E+1` are all `50`."""
    if isinstance(value, bool | str):
        return value
    number = Decimal(value)
    if number == number.to_integral_value() and abs(number) <= MAX_SAFE_INTEGER:
        return int(number)
    return normalize_decimal(number)


# --- the document -------------------------------------------------------------------------------


class Address(ContractModel):
    line1: Text | None = None
    line2: Text | None = None
    city: Text | None = None
    region: Region | None = None
    postal_code: Text | None = None
    country: CountryCode | None = None


class Location(ContractModel):
    lat: Latitude
    lon: Longitude


class Token(ContractModel):
    symbol: TokenSymbol | None = None
    chain: Chain
    contract_address: Text
    total_supply: TotalSupply | None = None
    decimals: TokenDecimals | None = None

    @field_validator("contract_address")
    @classmethod
    def _address_fits_chain(cls, address: str | None, info: ValidationInfo) -> str | None:
        chain = info.data.get("chain")
        # None: the chain itself is invalid (and reported as such), or a merge patch removes the
        # address (a patch's models take every field as optional; `patch` refuses the removal)
        if chain is None or address is None:
            return address
        try:
            return normalize_address(chain, address)
        except ValueError as exc:
            raise invalid("contract_address", f"not a valid {chain} address: {exc}") from None


class _DatedAmount(ContractModel):
    amount: Money
    currency: CurrencyCode
    as_of: AwareTimestamp | None = None


class AssetPrice(_DatedAmount):
    """Price per token as the asset document carries it (`as_of` optional here)."""


class Valuation(_DatedAmount):
    """The property's appraised value."""


class Rental(ContractModel):
    gross_yearly: NonNegativeDecimal | None = None
    net_yearly: NonNegativeDecimal | None = None
    currency: CurrencyCode | None = Field(default=None, validate_default=True)
    occupancy_rate: Fraction | None = None
    units_total: Count | None = None
    units_rented: Count | None = None

    @field_validator("currency")
    @classmethod
    def _currency_for_amounts(cls, currency: str | None, info: ValidationInfo) -> str | None:
        has_amount = any(info.data.get(name) is not None for name in ("gross_yearly", "net_yearly"))
        if currency is None and has_amount:
            raise invalid(
                "currency_missing", "is required when gross_yearly or net_yearly is given"
            )
        return currency

    @field_validator("units_rented")
    @classmethod
    def _within_total(cls, rented: int | None, info: ValidationInfo) -> int | None:
        total = info.data.get("units_total")
        if rented is not None and total is not None and rented > total:
            raise invalid("units_rented", f"must be at most units_total ({total})")
        return rented


class Legal(ContractModel):
    status: Text | None = None
    jurisdiction: Text | None = None
    entity_name: Text | None = None


class Area(ContractModel):
    value: Money
    unit: AreaUnit


class Media(ContractModel):
    url: HttpsUrl
    kind: MediaKind | None = None
    title: Text | None = None


def _meta_is_ignored(schema: dict[str, Any]) -> None:
    # A document read back (GET adds `_meta`) may be sent again as it is: say so in the schema
    # (`/v1/schema/asset.json` and the API document's `Asset` alike).
    schema["properties"]["_meta"] = {
        "description": "Added by GET; accepted and ignored on input, whatever it holds.",
    }


class Asset(ContractModel):
    """An asset document, schema version 1 (docs/api.md, "The asset document")."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_meta_is_ignored)

    id: AssetId
    updated_at: AwareTimestamp
    status: AssetStatus
    name: AssetName
    description: Description | None = None
    property_type: PropertyType | None = None
    address: Address | None = None
    location: Location | None = None
    token: Token | None = None
    price: AssetPrice | None = None
    valuation: Valuation | None = None
    rental: Rental | None = None
    legal: Legal | None = None
    area: Area | None = None
    year_built: YearBuilt | None = None
    media: Annotated[list[Media], Field(max_length=MAX_ITEMS)] | None = None
    attributes: (
        Annotated[dict[AttributeKey, AttributeValue], Field(max_length=MAX_ITEMS)] | None
    ) = None

    @model_validator(mode="before")
    @classmethod
    def _ignore_meta(cls, data: Any) -> Any:
        # `_meta` is what GET adds; accepting it lets a read document be sent back unchanged.
        if isinstance(data, dict) and "_meta" in data:
            return {key: value for key, value in data.items() if key != "_meta"}
        return data

    @field_serializer("attributes", when_used="json")
    def _attributes_json(
        self, attributes: dict[str, AttributeScalar] | None
    ) -> dict[str, str | int | bool] | None:
        if attributes is None:
            return None
        return {
            key: attribute_json(value) for key, value in attributes.items() if value is not None
        }


# --- operations ---------------------------------------------------------------------------------


def parse_asset(data: Any, *, now: datetime | None = None) -> Asset:
    """Validate a provider's document (a dict from `jsonsafe.loads`); raises AssetInvalid."""
    return validate_contract(Asset, data, now=now)


def normalized_document(asset: Asset) -> dict[str, Any]:
    """The JSON-ready normalised document: what is stored, served and hashed.

    Decimals as plain strings without trailing zeros, `total_supply` as a digit string,
    timestamps in UTC with microseconds and `Z`, EVM addresses in EIP-55 form, `xdai` as
    `gnosis`, null and absent optional fields (and null attributes) omitted.
    """
    return asset.model_dump(mode="json", exclude_none=True)


_LATE_KEY_CHARACTER = re.compile("[\ue000-\U0010ffff]")
_PLAIN_JSON_TYPES = (str, bool, type(None))


def _orjson_is_canonical(document: Any) -> bool:
    """Whether orjson with sorted keys writes exactly RFC 8785's bytes for this document.

    It does for dicts, lists, strings, booleans, null and integers within ±(2^53 - 1) (orjson
    escapes strings as RFC 8785 does), provided key order by code point equals RFC 8785's order
    by UTF-16 code unit, which holds when no key has a character at or above U+E000.
    """
    stack = [document]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            for key in node:
                if type(key) is not str or (
                    not key.isascii() and _LATE_KEY_CHARACTER.search(key) is not None
                ):
                    return False
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER:
                return False
        elif kind not in _PLAIN_JSON_TYPES:
            return False
    return True


def canonical_json(document: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON; through orjson (100x faster) when that gives the same bytes."""
    if _orjson_is_canonical(document):
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(document)


# Anything but dicts, lists, exact strings, bools, None and 53-bit integers makes orjson raise.
NORMALIZED_OPTIONS: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def normalized_canonical(asset: Asset) -> tuple[dict[str, Any], bytes]:
    """`normalized_document(asset)` and its `canonical_json`, with less work: the per-item path
    of feed runs and batches.

    A normalised document is pydantic's JSON-mode dump, so it holds only dicts, lists, exact
    strings, integers and booleans (never floats, tuples or enums); orjson refuses, under these
    options, integers beyond 53 bits and any other type. What remains of `_orjson_is_canonical`'s
    walk is the key order, which an all-ASCII output proves; other documents take that walk.
    """
    document = normalized_document(asset)
    try:
        written = orjson.dumps(document, option=NORMALIZED_OPTIONS)
    except orjson.JSONEncodeError:
        return document, canonical_json(document)
    if written.isascii():
        return document, written
    return document, canonical_json(document)


def content_hash(document: dict[str, Any]) -> bytes:
    """SHA-256 of the RFC 8785 canonical JSON of a normalised document."""
    return hashlib.sha256(canonical_json(document)).digest()


def content_hash_hex(document: dict[str, Any]) -> str:
    return content_hash(document).hex()


@functools.cache
def _json_schema() -> dict[str, Any]:
    schema = Asset.model_json_schema()  # `_meta` included (`_meta_is_ignored`)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "Asset document, schema version 1",
    }


def asset_json_schema() -> dict[str, Any]:
    """JSON Schema of the asset document, generated from the model (a fresh copy each call)."""
    return copy.deepcopy(_json_schema())
