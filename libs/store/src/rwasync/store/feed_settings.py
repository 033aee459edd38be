"""A feed registration checked against every rule (`parse_feed_settings`): what the provider's
`PUT /v1/feeds/{feed_id}`, its preview and the operator's `rwasync feed add` accept, with every
problem reported at once, each by its field's JSON pointer (`FeedSettingInvalid.errors`).
`rwasync.store.feeds` stores what passes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from rwasync.feeds.auth import FeedAuth, FeedSecrets, parse_auth
from rwasync.feeds.schedule import Schedule, parse_schedule
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.errors import json_pointer
from rwasync.schema.feeds import (
    DEFAULT_DELETION_THRESHOLD,
    DeletionThreshold,
    FeedFormat,
    FeedSettingInvalid,
    SettingErrors,
    check_feed_url,
    check_format,
)

T = TypeVar("T")

FEED_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FEED_ID_RULE: Final = "must be 1-128 letters, digits, '.', '_', ':' or '-'"
# What a new feed id may not be, though the pattern (by which feeds are looked up) lets it
# through: a leading '-' is read as an option by the CLI (`feed disable --help` printed help and
# exited 0, the feed untouched), and '.' and '..' are path segments no URL carries (trial).
NEW_FEED_ID_RULE: Final = "must not start with '-' nor be '.' or '..'"


def feed_id_rule_broken(feed_id: str, *, new: bool = True) -> str | None:
    """What is wrong with `feed_id` as the id of a feed being registered (`new`) or replaced,
    or None. A feed an earlier release registered under an id no longer taken for a new one is
    still replaced by its id: its provider could otherwise never correct it (upgrade trial)."""
    if not FEED_ID_PATTERN.fullmatch(feed_id):
        return FEED_ID_RULE
    if new and (feed_id.startswith("-") or feed_id in (".", "..")):
        return NEW_FEED_ID_RULE
    return None


# The column's range (a Postgres integer); far beyond any catalogue's size.
MAX_MIN_COUNT: Final = 2**31 - 1
_SETTINGS_KEYS: Final = frozenset(
    {"url", "format", "schedule", "auth", "deletion_threshold", "enabled"}
)


@dataclass(frozen=True)
class FeedSettings:
    """A feed registration that passed every rule."""

    url: str
    format: FeedFormat = FeedFormat.JSON
    schedule: Schedule = field(default_factory=Schedule)
    auth: FeedAuth = field(default_factory=FeedAuth)
    threshold: DeletionThreshold = DEFAULT_DELETION_THRESHOLD
    enabled: bool = True


# Decimal places a deletion threshold's percent may have: a share of a catalogue needs no more,
# and `1e-99999` failed the store (a 500) or was stored as 0.0 and failed every run (trial).
PERCENT_PLACES: Final = 4


def _percent(value: Any) -> Decimal:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise InvalidOperation
        share = Decimal(str(value))
        if not share.is_finite() or not 0 <= share <= 100:
            raise InvalidOperation
    except InvalidOperation:
        raise FeedSettingInvalid("/deletion_threshold/percent", "must be a number 0-100") from None
    exponent = share.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PERCENT_PLACES:
        rounded = share.quantize(Decimal(1).scaleb(-PERCENT_PLACES))
        if rounded != share:
            raise FeedSettingInvalid(
                "/deletion_threshold/percent",
                f"must have at most {PERCENT_PLACES} decimal places (got {value!s:.40})",
            )
        share = rounded  # `12.50000000`, `0E-99999`: the same number, in few digits
    return share


def _min_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MIN_COUNT:
        raise FeedSettingInvalid(
            "/deletion_threshold/min_count", f"must be an integer from 0 to {MAX_MIN_COUNT}"
        )
    return value


def _threshold(value: Any) -> DeletionThreshold:
    if value is None:
        return DEFAULT_DELETION_THRESHOLD
    if not isinstance(value, dict):
        raise FeedSettingInvalid("/deletion_threshold", 'must be {"percent", "min_count"}')
    found = SettingErrors()
    for key in sorted(set(value) - {"percent", "min_count"}):
        found.add(json_pointer(["deletion_threshold", key]), "unknown field")
    share = found.check(lambda: _percent(value.get("percent", DEFAULT_DELETION_THRESHOLD.percent)))
    count = found.check(
        lambda: _min_count(value.get("min_count", DEFAULT_DELETION_THRESHOLD.min_count))
    )
    found.raise_any()
    assert share is not None and count is not None
    return DeletionThreshold(share, count)


def _url(value: Any, policy: AddressPolicy) -> str:
    if value is None:
        raise FeedSettingInvalid("/url", "is required: the feed's http or https URL")
    if not isinstance(value, str):
        raise FeedSettingInvalid("/url", "must be a string: the feed's http or https URL")
    return check_feed_url(value, policy)


def _format(value: Any) -> FeedFormat:
    if not isinstance(value, str):
        raise FeedSettingInvalid("/format", "must be a string")
    return check_format(value)


def _schedule(value: Any) -> Schedule:
    if value is not None and not isinstance(value, str):
        raise FeedSettingInvalid(
            "/schedule", "must be an interval such as 24h, a cron expression, or null"
        )
    return parse_schedule(value)


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FeedSettingInvalid("/enabled", "must be true or false")
    return value


def _nul_at(value: Any, location: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where strings hold NUL (which Postgres text cannot store): a key's own location for a
    key, its value's for a value."""
    if isinstance(value, str):
        return [location] if "\x00" in value else []
    found: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [(*location, key)] if "\x00" in key else _nul_at(item, (*location, key))
    return found


def parse_feed_settings(
    document: Any,
    policy: AddressPolicy,
    *,
    feed_id: str | None = None,
    secrets: FeedSecrets | None = None,
) -> FeedSettings:
    """A registration document (`PUT /v1/feeds/{feed_id}`'s body, or what the CLI builds):
    `{"url", "format", "schedule", "auth", "deletion_threshold", "enabled"}`. Every problem is
    reported at once, each by its field's pointer, and with them `/feed_id` when the id the
    registration is for (`feed_id`, the PUT's) is not one a feed can have, and `/auth` when
    credentials are given but `secrets` (the settings' keys, for a registration to store) has
    none to seal them with."""
    if not isinstance(document, dict):
        raise FeedSettingInvalid("", "must be a JSON object")
    found = SettingErrors()
    # Whether the id is a new one is `put_feed`'s to say, which looks the feed up.
    if feed_id is not None and (broken := feed_id_rule_broken(feed_id, new=False)) is not None:
        found.add("/feed_id", broken)
    with_nul = _nul_at(document)
    for location in with_nul:
        found.add(json_pointer(location), "must not contain NUL")
    # A field holding NUL is reported for that alone: its other rules would only repeat it.
    spoiled = {location[0] for location in with_nul}
    for key in sorted(set(document) - _SETTINGS_KEYS - spoiled):
        found.add(json_pointer([key]), "unknown field")

    def field(name: str, rule: Callable[[], T]) -> T | None:
        return None if name in spoiled else found.check(rule)

    url = field("url", lambda: _url(document.get("url"), policy))
    fmt = field("format", lambda: _format(document.get("format", "json")))
    schedule = field("schedule", lambda: _schedule(document.get("schedule")))

    def auth_rule() -> FeedAuth:
        auth = parse_auth(document.get("auth"))
        return auth if secrets is None else secrets.check_sealable(auth)

    auth = field("auth", auth_rule)
    threshold = field("deletion_threshold", lambda: _threshold(document.get("deletion_threshold")))
    enabled = field("enabled", lambda: _enabled(document.get("enabled", True)))
    found.raise_any()
    assert url is not None and fmt is not None and schedule is not None and auth is not None
    assert threshold is not None and enabled is not None
    return FeedSettings(url, fmt, schedule, auth, threshold, enabled)
