"""Query parameters of the investor price API, checked before anything is read: a bad one is a
400 problem naming it."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from rwasync.platform.http import Problem

ASSET_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_ASSET_IDS: Final = 500
INTERVALS: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
# Candles one answer may hold; a longer range is refused rather than silently cut.
MAX_CANDLES: Final = 5000
DEFAULT_RANGE: Final = timedelta(days=30)


def bad_query(parameter: str, message: str) -> Problem:
    return Problem(
        400,
        "Bad Request",
        f"{parameter}: {message}",
        kind="bad-query",
        errors=[{"parameter": parameter, "message": message}],
    )


def required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if value is None or value == "":
        raise bad_query(name, "is required")
    return value


def asset_ids(query: Mapping[str, str], *, optional: bool = False) -> list[str] | None:
    """`asset_id=a,b,c`: 1-500 asset ids, in request order, repeats dropped."""
    if optional and not query.get("asset_id"):
        return None
    ids = list(dict.fromkeys(required(query, "asset_id").split(",")))
    if len(ids) > MAX_ASSET_IDS:
        raise bad_query("asset_id", f"at most {MAX_ASSET_IDS} ids, comma-separated")
    for asset_id in ids:
        if not ASSET_ID.match(asset_id):
            raise bad_query(
                "asset_id", f"{asset_id[:140]!r} is not an asset id (1-128 of A-Za-z0-9._:-)"
            )
    return ids


def timestamp(query: Mapping[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_query(name, "must be an RFC 3339 timestamp with an offset") from None
    if moment.tzinfo is None:
        raise bad_query(name, "must be an RFC 3339 timestamp with an offset")
    return moment


def time_range(query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    """`from` (inclusive) and `to` (exclusive); default the 30 days before `to` (default now)."""
    end = timestamp(query, "to") or now
    start = timestamp(query, "from") or end - DEFAULT_RANGE
    if start >= end:
        raise bad_query("from", "must be earlier than to")
    return start, end


def limit(query: Mapping[str, str], *, default: int, maximum: int) -> int:
    value = query.get("limit")
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise bad_query("limit", f"must be an integer from 1 to {maximum}")
    return int(value)


def interval(query: Mapping[str, str]) -> timedelta:
    value = required(query, "interval")
    if value not in INTERVALS:
        raise bad_query("interval", "must be 1h or 1d")
    return INTERVALS[value]


def history_cursor(query: Mapping[str, str]) -> datetime | None:
    """The as_of a history page ended at, as `next_cursor` carried it."""
    value = query.get("cursor")
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(base64.urlsafe_b64decode(value.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_query("cursor", "is not one this API returned") from None
    if moment.tzinfo is None:
        raise bad_query("cursor", "is not one this API returned")
    return moment


def next_history_cursor(as_of: datetime) -> str:
    return base64.urlsafe_b64encode(as_of.isoformat().encode()).decode()
