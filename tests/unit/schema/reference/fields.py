"""Field types shared by the asset and price contracts: each rule is written once, here.

Inputs come from `jsonsafe.loads` (numbers are `int` or `Decimal`) or from hand-built dicts, so
the numeric types also take numeric strings and (exactly converted) floats, but never booleans.
Timestamps are RFC 3339 with an offset, held in UTC, and at most MAX_FUTURE_SKEW ahead of the
`now` passed in the validation context (see `validate_contract`).
"""

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, TypeVar

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from rwasync.schema.errors import (
    CUSTOM_ERROR_PREFIX,
    NO_NUL_PATTERN,
    AssetInvalid,
    FieldError,
    field_errors,
    json_pointer,
)
from tests.unit.schema.reference.decimals import (
    MAX_DECIMAL_DIGITS,
    normalize_decimal,
    plain_digit_count,
)
from tests.unit.schema.reference.timestamps import (
    MAX_FUTURE_SKEW,
    timestamp_text,
    too_far_ahead,
    utc_now,
)

# The largest integer every JSON reader holds exactly (and RFC 8785 can canonicalise).
MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_TEXT_LENGTH: Final = 2000

COUNTRY_CODES: Final = frozenset(country.alpha_2 for country in pycountry.countries)
CURRENCY_CODES: Final = frozenset(currency.alpha_3 for currency in pycountry.currencies)


class ContractModel(BaseModel):
    """Base of every contract model: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def invalid(kind: str, message: str) -> PydanticCustomError:
    """A validation error (type `rwasync.<kind>`) whose message reaches the provider as written."""
    return PydanticCustomError(CUSTOM_ERROR_PREFIX + kind, "{message}", {"message": message})


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


# --- validation context -------------------------------------------------------------------------

Contract = TypeVar("Contract", bound=BaseModel)


def validate_contract(
    model: type[Contract], data: Any, *, now: datetime | None = None, envelope: bool = False
) -> Contract:
    """Validate `data` into `model` against the clock `now`; AssetInvalid lists every error.
    An `envelope` (a batch, whose items are validated one by one later) is checked for crowded
    objects at its top level only, so that a crowded item fails that item alone."""
    if now is None:
        now = utc_now()
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    crowded = _crowded_object(data, top_only=envelope)
    if crowded is not None:
        raise AssetInvalid([crowded])
    try:
        return model.model_validate(data, context={"now": now})
    except ValidationError as exc:
        raise AssetInvalid(field_errors(exc)) from None


# More keys than any object of a contract may hold (its fields, or MAX_ITEMS attributes).
MAX_OBJECT_KEYS: Final = 200


def _crowded_object(data: Any, *, top_only: bool = False) -> FieldError | None:
    """The first object with more than MAX_OBJECT_KEYS keys, as one error. pydantic would report
    each unknown key of it, and a million errors cost seconds and hundreds of MB to build."""
    if top_only:
        if isinstance(data, dict) and len(data) > MAX_OBJECT_KEYS:
            return FieldError("", f"has {len(data)} keys: far too many")
        return None
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if len(node) > MAX_OBJECT_KEYS:
                return FieldError(json_pointer(path), f"has {len(node)} keys: far too many")
            stack.extend((value, (*path, str(key))) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return None


def validation_now(info: ValidationInfo) -> datetime:
    """The `now` this validation runs against (the context's, else the clock)."""
    context = info.context
    if isinstance(context, dict) and isinstance(context.get("now"), datetime):
        now: datetime = context["now"]
        return now
    return utc_now()


# --- text ---------------------------------------------------------------------------------------

Text = Annotated[
    str, Strict(), StringConstraints(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN)
]
NonEmptyText = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN),
]


def _code_check(codes: frozenset[str], what: str, example: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        code = value.upper() if value.isascii() else value
        if code not in codes:
            raise invalid(what, f"unknown {what} {_shown(value, 20)}: expected {example}")
        return code

    return check


# Accepted in any case and stored uppercase, as the standards write them.
CurrencyCode = Annotated[
    str,
    Strict(),
    AfterValidator(_code_check(CURRENCY_CODES, "currency", "an ISO 4217 code such as USD")),
    WithJsonSchema(
        {"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "ISO 4217 currency code"}
    ),
]
CountryCode = Annotated[
    str,
    Strict(),
    AfterValidator(_code_check(COUNTRY_CODES, "country", "an ISO 3166-1 alpha-2 code such as US")),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z]{2}$",
            "description": "ISO 3166-1 alpha-2 country code",
        }
    ),
]

# --- numbers ------------------------------------------------------------------------------------

_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NOT_A_DECIMAL = "must be a decimal number (a JSON number or a numeric string)"
_TOO_MANY_DIGITS = (
    f"must have at most {MAX_DECIMAL_DIGITS} digits written out (an exponent counts as its zeros)"
)
# Enough bits for any integer of MAX_DECIMAL_DIGITS digits; checked before converting, cheaply.
_MAX_INTEGER_BITS: Final = math.ceil(MAX_DECIMAL_DIGITS * math.log2(10))


def as_decimal(value: Any) -> Decimal:
    """A finite Decimal of at most MAX_DECIMAL_DIGITS digits from a number or numeric string."""
    if isinstance(value, bool):
        raise invalid("decimal_type", "must be a number, not a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if value.bit_length() > _MAX_INTEGER_BITS:
            raise invalid("decimal_digits", _TOO_MANY_DIGITS)
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid("decimal_finite", "must be a finite number")
        number = Decimal(repr(value))  # the shortest text that round-trips: 0.1 stays 0.1
    elif isinstance(value, str):
        if len(value) > 2 * MAX_DECIMAL_DIGITS or _NUMERIC_TEXT.fullmatch(value) is None:
            raise invalid("decimal_parsing", _NOT_A_DECIMAL)
        try:
            number = Decimal(value)
        except InvalidOperation:  # an exponent beyond Decimal's range
            raise invalid("decimal_digits", _TOO_MANY_DIGITS) from None
    else:
        raise invalid("decimal_type", _NOT_A_DECIMAL)
    if not number.is_finite():
        raise invalid("decimal_finite", "must be a finite number")
    if plain_digit_count(number) > MAX_DECIMAL_DIGITS:
        raise invalid("decimal_digits", _TOO_MANY_DIGITS)
    return number


def as_integer(value: Any) -> int:
    """An int from an integer, an integral decimal or a string of digits (not from a boolean)."""
    if isinstance(value, bool):
        raise invalid("int_type", "must be an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if len(value) > MAX_DECIMAL_DIGITS + 1 or _INTEGER_TEXT.fullmatch(value) is None:
            raise invalid("int_parsing", "must be an integer")
        return int(value)
    if isinstance(value, Decimal | float):
        number = as_decimal(value)
        if number != number.to_integral_value():
            raise invalid("int_from_fraction", "must be an integer (no fractional part)")
        return int(number)
    raise invalid("int_type", "must be an integer")


# Constraints go before the BeforeValidator so that they land on the inner type, where pydantic
# checks them and writes them into the JSON Schema (`exclusiveMinimum`, `maximum`...).
AS_DECIMAL = BeforeValidator(as_decimal)
DECIMAL_AS_TEXT = PlainSerializer(normalize_decimal, return_type=str, when_used="json")
AS_INTEGER = BeforeValidator(as_integer)

DecimalNumber = Annotated[Decimal, AS_DECIMAL, DECIMAL_AS_TEXT]
Money = Annotated[Decimal, Field(gt=0), AS_DECIMAL, DECIMAL_AS_TEXT]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0), AS_DECIMAL, DECIMAL_AS_TEXT]
Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER), AS_INTEGER]

# --- timestamps ---------------------------------------------------------------------------------

# ASCII digits only: `\d` alone also takes other scripts' digits ('٢٠٢٤'), which `int` reads.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,32}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)
_TIMESTAMP_EXPECTED = "must be an RFC 3339 timestamp with an offset, e.g. 2024-05-01T12:00:00Z"
_NAIVE = "must include a UTC offset (Z or +hh:mm), e.g. 2024-05-01T12:00:00Z"


def _parse_rfc3339(text: str) -> datetime:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise invalid("datetime_parsing", _TIMESTAMP_EXPECTED)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise invalid("timezone_aware", _NAIVE)
    try:
        if zulu is not None:
            zone = UTC
        else:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(-offset if sign == "-" else offset)
        # Precision beyond microseconds is cut, never rounded up across a second.
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, zone
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid("datetime_range", "is not a valid date and time") from None


# Instants outside these years are refused: the edges of Python's range are stored by asyncpg as
# Postgres' -infinity/infinity (and read back naive), and no real estate record needs them.
EARLIEST: Final = datetime(1000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC)


def as_utc_datetime(value: Any) -> datetime:
    """An aware datetime in UTC from RFC 3339 text (offset required) or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise invalid("timezone_aware", _NAIVE)
        try:
            moment = value.astimezone(UTC)
        except OverflowError:
            raise invalid("datetime_range", "is not a valid date and time") from None
    elif isinstance(value, str) and len(value) <= 64:
        moment = _parse_rfc3339(value)
    else:
        raise invalid("datetime_type", _TIMESTAMP_EXPECTED)
    if not EARLIEST <= moment < LATEST:
        raise invalid("datetime_range", "must be from the year 1000 to 9998")
    return moment


def _not_too_far_ahead(moment: datetime, info: ValidationInfo) -> datetime:
    if too_far_ahead(moment, validation_now(info)):
        minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
        raise invalid("datetime_future", f"must not be more than {minutes} minutes in the future")
    return moment


_TIMESTAMP_JSON = PlainSerializer(timestamp_text, return_type=str, when_used="json")

# Any RFC 3339 instant (used where the future is allowed, e.g. rendering stored values).
# Its JSON Schema states the year range too (as the local year; an offset can still carry the
# first or last hours across it).
_TIMESTAMP_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "format": "date-time",
        "pattern": "^(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
    }
)
RFC3339Timestamp = Annotated[
    datetime, BeforeValidator(as_utc_datetime), _TIMESTAMP_JSON, _TIMESTAMP_SCHEMA
]
# A provider's timestamp: also no more than MAX_FUTURE_SKEW ahead of the validation's `now`.
AwareTimestamp = Annotated[RFC3339Timestamp, AfterValidator(_not_too_far_ahead)]


# Every provider id rwasync issues (`prv_` and 16 hex digits) fits; anything else names no
# provider, so a read filtered by it is refused before any look-up (a NUL, say, would be an
# error from Postgres, not an empty answer).
PROVIDER_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ProviderId = Annotated[str, StringConstraints(pattern=PROVIDER_ID.pattern)]
