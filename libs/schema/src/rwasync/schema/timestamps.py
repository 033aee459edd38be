"""Timestamps as rwasync stores and renders them, and the limit on clocks running ahead."""

from datetime import UTC, datetime, timedelta
from typing import Final

# `updated_at`, `deleted_at`, `as_of` and a feed's `timestamp` may be at most this far ahead of
# rwasync's clock, so no single message can freeze an asset with a version from the far future.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)


def timestamp_text(moment: datetime) -> str:
    """UTC with microsecond precision and `Z`: the one rendering used in documents and hashes."""
    # `isoformat` is several times cheaper than `strftime` and writes the same text (in UTC the
    # offset it adds is always `+00:00`); years below 1000 are refused wherever a timestamp is
    # read, and `isoformat` writes them with four digits, as RFC 3339 wants.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


def too_far_ahead(moment: datetime, now: datetime | None = None) -> bool:
    return moment - (now or utc_now()) > MAX_FUTURE_SKEW
