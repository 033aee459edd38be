"""The one timestamp rendering: UTC, microseconds, `Z`, the same bytes whatever the offset; and
the one reading, of ASCII digits only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from rwasync.schema.feeds import FeedSettingInvalid, parse_interval
from rwasync.schema.fields import as_utc_datetime
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


# Every decimal digit that is not ASCII (Arabic-Indic, Devanagari, full-width, mathematical...):
# `\d` and `int` take them, an RFC 3339 timestamp does not.
NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())
VALID = "2024-05-01T12:00:00.123456+02:00"
DIGIT_POSITIONS = [n for n, c in enumerate(VALID) if c.isdigit()]


@given(st.sampled_from(DIGIT_POSITIONS), NON_ASCII_DIGITS)
def test_a_timestamp_with_any_non_ascii_digit_is_refused(position: int, digit: str) -> None:
    assert as_utc_datetime(VALID) == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    text = VALID[:position] + digit + VALID[position + 1 :]
    with pytest.raises(PydanticCustomError) as refused:
        as_utc_datetime(text)
    assert refused.value.type.endswith("datetime_parsing")


@pytest.mark.parametrize("text", ["٢٠٢٤-٠٥-٠١T١٢:٠٠:٠٠Z", "２０２４-０５-０１T１２:００:００Z"])
def test_a_timestamp_written_wholly_in_another_scripts_digits_is_refused(text: str) -> None:
    with pytest.raises(PydanticCustomError):
        as_utc_datetime(text)


@pytest.mark.parametrize("text", ["١٥m", "１５m", "9٠s", "𝟗𝟎"])
def test_a_feed_interval_in_non_ascii_digits_is_refused(text: str) -> None:
    assert parse_interval("15m") == 900
    with pytest.raises(FeedSettingInvalid) as refused:
        parse_interval(text)
    assert refused.value.pointer == "/schedule"
