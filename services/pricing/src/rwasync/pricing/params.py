"""Query parameters of the investor price API, checked before anything is read: a bad one is a
400 problem naming it. Each rule is also written as the type `/v1/openapi.json` declares, from the
same constants."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

from multidict import MultiMapping
from pydantic import Field, StringConstraints

from rwasync.platform.http import bad_query, optional_query, query_timestamp
from rwasync.schema.fields import PROVIDER_ID
from rwasync.schema.timestamps import MAX_FUTURE_SKEW

MAX_ASSET_ID_LENGTH: Final = 128
ONE_ASSET_ID: Final = rf"[A-Za-z0-9._:-]{{1,{MAX_ASSET_ID_LENGTH}}}"
ASSET_ID: Final = re.compile(rf"^{ONE_ASSET_ID}$")
MAX_ASSET_IDS: Final = 500
# The request line pricing accepts (aiohttp's default is 8190 bytes): room for MAX_ASSET_IDS ids
# of the longest length each sent as its own `&asset_id=`, the longest way to write them, and a
# default line's worth for the rest (path, provider_id, access_token).
MAX_REQUEST_LINE: Final = MAX_ASSET_IDS * (len("&asset_id=") + MAX_ASSET_ID_LENGTH) + 8190
MAX_LIMIT_DIGITS: Final = 4
INTERVALS: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
# Candles one answer may hold; a longer range is refused rather than silently cut.
MAX_CANDLES: Final = 5000
DEFAULT_RANGE: Final = timedelta(days=30)
# Where candles start: as the OHLC query's `date_bin` origin, in UTC.
CANDLE_ORIGIN: Final = datetime(1970, 1, 1, tzinfo=UTC)


def candle_count(start: datetime, end: datetime, bucket: timedelta) -> int:
    """How many candles [start, end) touches, a part of one at either end counting as one."""
    first = (start - CANDLE_ORIGIN) // bucket
    last = (end - CANDLE_ORIGIN - timedelta(microseconds=1)) // bucket
    return max(0, last - first + 1)


# The types `/v1/openapi.json` gives the parameters above.
AssetIdList = Annotated[str, StringConstraints(pattern=rf"^{ONE_ASSET_ID}(,{ONE_ASSET_ID})*$")]
AssetId = Annotated[str, StringConstraints(pattern=ASSET_ID.pattern)]
Interval = Literal["1h", "1d"]  # the keys of INTERVALS
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def limit_type(maximum: int) -> object:
    return Annotated[int, Field(ge=1, le=maximum)]


def required(query: Mapping[str, str], name: str) -> str:
    """The parameter's value: a 400 if it is absent, or present but empty (said as such)."""
    value = query.get(name)
    if value is None:
        raise bad_query(name, "is required")
    if value == "":
        raise bad_query(name, "must not be empty")
    return value


def known_form(provider_id: str, asset_id: str | None = None) -> bool:
    """Whether the ids could name a provider (and asset) at all; others are not looked up."""
    if not PROVIDER_ID.fullmatch(provider_id):
        return False
    return asset_id is None or ASSET_ID.fullmatch(asset_id) is not None


def asset_ids(query: MultiMapping[str], *, optional: bool = False) -> list[str] | None:
    """`asset_id=a,b,c`, or `asset_id` repeated (`asset_id=a&asset_id=b,c`: every one counts):
    1-500 asset ids, in request order, repeats dropped. With `optional`, an absent `asset_id` is
    None (every asset); one present but empty is still a 400, so that an empty watch list never
    means everything."""
    if optional and "asset_id" not in query:
        return None
    required(query, "asset_id")
    ids = list(dict.fromkeys(",".join(query.getall("asset_id")).split(",")))
    if len(ids) > MAX_ASSET_IDS:
        raise bad_query("asset_id", f"at most {MAX_ASSET_IDS} ids, comma-separated or repeated")
    for asset_id in ids:
        if not ASSET_ID.fullmatch(asset_id):
            rule = f"1-{MAX_ASSET_ID_LENGTH} of A-Za-z0-9._:-"
            raise bad_query("asset_id", f"{asset_id[:140]!r} is not an asset id ({rule})")
    return ids


def timestamp(query: Mapping[str, str], name: str) -> datetime | None:
    """An optional timestamp: absent is None; sent empty is a 400 (as docs/api.md 3.5 says), not
    the default, so that a client's unset variable never silently widens the range."""
    value = optional_query(query, name)
    if value is None:
        return None
    return query_timestamp(name, value)


def _in_utc(moment: datetime, name: str, message: str) -> datetime:
    # `0001-01-01T00:00:00+01:00` is a valid timestamp that has no UTC datetime.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise bad_query(name, message) from None


def time_range(query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    """`from` (inclusive) and `to` (exclusive); default the 30 days before `to`, whose default is
    as far ahead of now as a tick may be dated (MAX_FUTURE_SKEW): the latest price, which may
    be, was missing from the default history and candles (investor trial)."""
    end = timestamp(query, "to") or now + MAX_FUTURE_SKEW
    start = timestamp(query, "from")
    if start is None:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:
            raise bad_query("to", "leaves no room for the default range before it") from None
    if start >= end:
        raise bad_query("from", "must be earlier than to")
    return start, end


def limit(query: Mapping[str, str], *, default: int, maximum: int) -> int:
    value = optional_query(query, "limit")
    if value is None:
        return default
    # isascii: str.isdigit() also holds for digits int() refuses, such as "²".
    digits = len(value) <= MAX_LIMIT_DIGITS and value.isascii() and value.isdigit()
    if not digits or not 1 <= int(value) <= maximum:
        raise bad_query("limit", f"must be an integer from 1 to {maximum}")
    return int(value)


def interval(query: Mapping[str, str]) -> timedelta:
    value = required(query, "interval")
    if value not in INTERVALS:
        raise bad_query("interval", "must be 1h or 1d")
    return INTERVALS[value]


def history_cursor(query: Mapping[str, str]) -> datetime | None:
    """The as_of a history page ended at, as `next_cursor` carried it."""
    value = optional_query(query, "cursor")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(base64.urlsafe_b64decode(value.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_query("cursor", "is not one this API returned") from None
    if moment.tzinfo is None:
        raise bad_query("cursor", "is not one this API returned")
    return _in_utc(moment, "cursor", "is not one this API returned")


def next_history_cursor(as_of: datetime) -> str:
    return base64.urlsafe_b64encode(as_of.isoformat().encode()).decode()
