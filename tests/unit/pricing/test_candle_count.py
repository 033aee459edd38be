"""How many candles a range touches, as the 5,000-candle limit of `/ohlc` counts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rwasync.pricing.params import candle_count

pytestmark = pytest.mark.unit

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        (T0, T0 + 5000 * HOUR, 5000),  # aligned: whole candles only
        (T0 + HOUR / 2, T0 + 5000 * HOUR + HOUR / 2, 5001),  # a part at each end
        (T0 + HOUR / 2, T0 + HOUR, 1),
        (T0, T0 + timedelta(microseconds=1), 1),
        (T0 - HOUR / 2, T0 + HOUR / 2, 2),  # across an hour, before and after it
    ],
)
def test_candles_touched(start: datetime, end: datetime, count: int) -> None:
    assert candle_count(start, end, HOUR) == count


def test_days_are_utc_days_whatever_the_offset_sent() -> None:
    start = datetime(2026, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))  # 00:30 UTC
    assert candle_count(start, start + timedelta(days=2), timedelta(days=1)) == 3
