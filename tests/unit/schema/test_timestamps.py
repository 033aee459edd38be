"""The one timestamp rendering: UTC, microseconds, `Z`, the same bytes whatever the offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rwasync.schema.timestamps import timestamp_text

pytestmark = pytest.mark.unit

offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=offsets | st.just(UTC),
    )
)
def test_renders_as_strftime_did_for_every_offset_and_year(moment: datetime) -> None:
    # The bytes documents were hashed in before the faster rendering: they must not change.
    assert timestamp_text(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_examples() -> None:
    assert timestamp_text(datetime(2025, 6, 1, 12, tzinfo=UTC)) == "2025-06-01T12:00:00.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert timestamp_text(datetime(2025, 6, 1, 1, 2, 3, 4, tzinfo=plus_two)) == (
        "2025-05-31T23:02:03.000004Z"
    )
