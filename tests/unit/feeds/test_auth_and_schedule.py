"""Feed credentials (parsing, sealing, never shown) and schedules (interval, cron, jitter)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from rwasync.feeds.auth import AuthType, FeedAuth, FeedSecrets, SecretsUnavailable, parse_auth
from rwasync.feeds.fetch import Downloaded, Validators
from rwasync.feeds.schedule import MAX_CRON_JITTER, MAX_RESUME_JITTER, Schedule, parse_schedule
from rwasync.schema.feeds import FeedSettingInvalid

pytestmark = pytest.mark.unit

KEY = FeedSecrets.new_key()


def test_each_auth_type_becomes_its_request_header() -> None:
    basic = parse_auth({"type": "basic", "username": "feeds", "password": "s3cret"})
    assert basic.request_headers() == {
        "Authorization": "Basic " + base64.b64encode(b"feeds:s3cret").decode()
    }
    assert parse_auth({"type": "bearer", "token": "tok"}).request_headers() == {
        "Authorization": "Bearer tok"
    }
    header = parse_auth({"type": "header", "name": "X-Api-Key", "value": "k1"})
    assert header.request_headers() == {"X-Api-Key": "k1"}
    assert (
        parse_auth(None).request_headers() == {} == parse_auth({"type": "none"}).request_headers()
    )


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"type": "digest"}, "/auth/type"),
        ({"type": "basic", "username": "a:b", "password": "x"}, "/auth/username"),
        ({"type": "basic", "username": "a"}, "/auth/password"),
        ({"type": "bearer", "token": "line\r\nX-Injected: 1"}, "/auth/token"),
        ({"type": "header", "name": "Host", "value": "x"}, "/auth/name"),
        ({"type": "header", "name": "Bad Name", "value": "x"}, "/auth/name"),
        # `$` also matched before a final line break: the name was stored, and failed each fetch
        ({"type": "header", "name": "X-Api-Key\n", "value": "x"}, "/auth/name"),
        ({"type": "bearer", "token": "t", "password": "p"}, "/auth/password"),
        ("basic", "/auth"),
    ],
)
def test_bad_credentials_name_the_field(document: object, pointer: str) -> None:
    with pytest.raises(FeedSettingInvalid) as caught:
        parse_auth(document)
    assert caught.value.pointer == pointer


def test_secrets_are_sealed_never_shown_and_open_only_with_the_key() -> None:
    auth = parse_auth({"type": "basic", "username": "feeds", "password": "s3cret"})
    assert "s3cret" not in repr(auth) and auth.public() == {"type": "basic", "username": "feeds"}
    sealed = FeedSecrets(KEY).seal(auth)
    assert sealed is not None and b"s3cret" not in sealed
    # Rotation: a new key first, the old one still opens what it sealed.
    rotated = FeedSecrets(f"{FeedSecrets.new_key()},{KEY}")
    assert rotated.open(sealed) == "s3cret"
    assert FeedAuth.from_public(auth.public(), rotated.open(sealed)).request_headers() == (
        auth.request_headers()
    )
    with pytest.raises(SecretsUnavailable):
        FeedSecrets(FeedSecrets.new_key()).open(sealed)
    with pytest.raises(SecretsUnavailable):
        FeedSecrets("").open(sealed)


def test_without_a_key_a_feed_with_credentials_is_refused_not_stored_in_clear() -> None:
    with pytest.raises(FeedSettingInvalid) as caught:
        FeedSecrets("").seal(parse_auth({"type": "bearer", "token": "tok"}))
    assert caught.value.pointer == "/auth" and "RWASYNC_FEED_SECRETS_KEY" in caught.value.message
    assert FeedSecrets("").seal(FeedAuth(AuthType.NONE)) is None
    with pytest.raises(ValueError, match="Fernet"):
        FeedSecrets("not-a-key")


def test_an_interval_runs_one_interval_later_with_up_to_ten_percent_jitter() -> None:
    schedule = parse_schedule("1h")
    start = datetime(2025, 6, 1, tzinfo=UTC)
    times = [schedule.next_run(start, random.Random(seed)) for seed in range(50)]
    assert all(start + timedelta(hours=1) <= t <= start + timedelta(minutes=66) for t in times)
    assert len(set(times)) > 40
    assert schedule.text() == "3600s" and not schedule.manual


def test_an_interval_stored_before_the_floor_runs_at_the_floors_pace() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)
    stored = Schedule(interval_seconds=1)  # registered when a `1s` interval was accepted
    next_run = stored.next_run(start, random.Random(0))
    assert next_run is not None and next_run >= start + timedelta(seconds=60)


def test_a_cron_schedule_runs_at_its_next_time_with_bounded_jitter() -> None:
    schedule = parse_schedule("0  3 * * *")
    assert schedule.cron == "0 3 * * *"
    start = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
    first = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)
    times = [schedule.next_run(start, random.Random(seed)) for seed in range(50)]
    assert all(first <= t <= first + MAX_CRON_JITTER for t in times)
    assert parse_schedule(None).manual and parse_schedule(None).next_run(start) is None


@pytest.mark.parametrize(
    ("text", "most"),
    [
        ("60s", timedelta(seconds=6)),
        ("1h", MAX_RESUME_JITTER),  # 10 % would be 6 minutes
        ("*/5 * * * *", timedelta(seconds=30)),
        ("0 3 * * *", MAX_RESUME_JITTER),  # not at 03:00 tomorrow
    ],
)
def test_a_feed_put_back_on_its_schedule_runs_once_soon(text: str, most: timedelta) -> None:
    schedule = parse_schedule(text)
    now = datetime(2025, 6, 1, 4, 1, 7, tzinfo=UTC)
    times = [schedule.resume(now, random.Random(seed)) for seed in range(50)]
    assert all(t is not None and now <= t <= now + most for t in times), times
    assert len(set(times)) > 40
    assert parse_schedule(None).resume(now) is None


@pytest.mark.parametrize(
    "text", ["0 3 * *", "61 * * * *", "every day", "0s", "-5m", "1s", "59", "", "  ", "\t"]
)
def test_a_bad_schedule_names_the_field(text: str) -> None:
    with pytest.raises(FeedSettingInvalid) as caught:
        parse_schedule(text)
    assert caught.value.pointer == "/schedule"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Mon, 02 Nov 2026 10:00:00 GMT", datetime(2026, 11, 2, 10, 0, tzinfo=UTC)),
        # the email parser read 0001 as 2001 and 0099 as 1999 (newcomer trial): no snapshot time
        ("Mon, 01 Jan 0001 00:00:00 GMT", None),
        ("Thu, 01 Jan 0099 00:00:00 GMT", None),
        ("Sun, 01 Jan 0999 00:00:00 GMT", None),
        ("not a date", None),
    ],
)
def test_a_last_modified_is_read_as_written_or_not_at_all(
    header: str, expected: datetime | None
) -> None:
    fetched = Downloaded(
        url="http://feeds.example.com/a.json",
        not_modified=False,
        started_at=datetime(2026, 11, 2, tzinfo=UTC),
        tries=1,
        validators=Validators(last_modified=header),
    )
    assert fetched.last_modified_at == expected
