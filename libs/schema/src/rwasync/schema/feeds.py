"""Feed rules in one place (pure): format names, run statuses and reason codes, the default
deletion threshold, schedules, and the policy a feed URL must pass when it is registered.

The operator CLI (`feed add`), the provider's feed API and the poller all import these, so a rule
cannot drift between the place that accepts a feed and the place that runs it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Final, TypeVar
from urllib.parse import urlsplit

from rwasync.schema.addresses import AddressPolicy, AddressRefused, connect_host
from rwasync.schema.errors import FieldError, truncated

T = TypeVar("T")


class FeedFormat(StrEnum):
    """The body format of a feed (`--format`); gzip is recognised separately."""

    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


# The formats the poller reads (gzip is recognised by Content-Encoding or a `.gz` path).
READABLE_FORMATS: Final = frozenset(FeedFormat)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    HELD = "held"
    FAILED = "failed"
    REJECTED = "rejected"


# A run in one of these has ended (a held run may still be approved or rejected).
FINISHED_STATUSES: Final = frozenset(
    {RunStatus.OK, RunStatus.NOT_MODIFIED, RunStatus.HELD, RunStatus.FAILED, RunStatus.REJECTED}
)


# A run's reason quotes what the provider's server sent (a malformed status line, a header, a
# CSV header cell): it is kept to this many characters, as a person reads it.
MAX_REASON_CHARS: Final = 1000


def shown_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` as a run's stored reason: every character that is not printable (control
    characters, line breaks, bidirectional overrides, lone surrogates) escaped as Python
    writes it (`\\x1b`, `\\n`, `\\u202e`), then cut to `limit` characters, ending `…` when
    cut. A server's bytes echoed in a reason can neither forge lines in a log or a terminal
    (`rwasync feed runs`) nor fill the run's row."""
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
            for c in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ReasonCode(StrEnum):
    """Why a run is held, failed or rejected."""

    EMPTY_FEED = "empty_feed"
    TRUNCATED = "truncated"
    # The snapshot is older than the newest the feed applied (a stale copy, a clock gone back).
    STALE_SNAPSHOT = "stale_snapshot"
    DELETION_THRESHOLD = "deletion_threshold"
    # Invalid items whose id cannot be read, in a snapshot that would delete: any of them may
    # be one of the assets it deletes.
    UNIDENTIFIED_ITEMS = "unidentified_items"
    HTTP_STATUS = "http_status"
    FETCH_ERROR = "fetch_error"
    TIMEOUT = "timeout"
    SIZE_LIMIT = "size_limit"
    PARSE_ERROR = "parse_error"
    FUTURE_TIMESTAMP = "future_timestamp"
    ADDRESS_REFUSED = "address_refused"
    REJECTED_BY_OPERATOR = "rejected_by_operator"
    # A publish was not confirmed; triggering the run again is safe (events repeat harmlessly).
    BROKER_UNAVAILABLE = "broker_unavailable"
    # An approved held run not applied: a later run of its feed read a newer snapshot meanwhile.
    SUPERSEDED = "superseded"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class DeletionThreshold:
    """Hold a run that would delete more than `percent` % of the provider's live assets and more
    than `min_count` of them."""

    percent: Decimal = Decimal(20)
    min_count: int = 5

    def exceeded_by(self, deletions: int, live: int) -> bool:
        return deletions * 100 > self.percent * live and deletions > self.min_count


DEFAULT_DELETION_THRESHOLD: Final = DeletionThreshold()

MAX_URL_LENGTH: Final = 2000


class FeedSettingInvalid(Exception):
    """A feed registration breaks rules: `errors` lists every problem found, each naming its
    field by a JSON pointer (as in a 422's errors); `pointer` and `message` are the first's."""

    def __init__(self, pointer: str, message: str) -> None:
        self.errors = [FieldError(pointer, message)]
        super().__init__(f"{pointer}: {message}")
        self.pointer = pointer
        self.message = message

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> FeedSettingInvalid:
        """All of `errors` (at least one; at most MAX_REPORTED_ERRORS are kept)."""
        kept = truncated(list(errors))
        invalid = cls(kept[0].pointer, kept[0].message)
        invalid.errors = kept
        invalid.args = ("; ".join(f"{e.pointer or '/'}: {e.message}" for e in kept),)
        return invalid


class SettingErrors:
    """The problems of a registration's fields, collected so that all are reported at once: each
    field's rule raises FeedSettingInvalid for that field, and `check` notes it and goes on."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, pointer: str, message: str) -> None:
        self.errors.append(FieldError(pointer, message))

    def check(self, rule: Callable[[], T]) -> T | None:
        """What `rule` returns, or None once its errors are noted."""
        try:
            return rule()
        except FeedSettingInvalid as exc:
            self.errors.extend(exc.errors)
            return None

    def raise_any(self) -> None:
        if self.errors:
            raise FeedSettingInvalid.of(self.errors)


_INTERVAL = re.compile(r"([0-9]{1,12})([smhd]?)")  # ASCII: `\d` takes '١٥' too
# A feed runs at least once a year; longer would overflow the schedule's arithmetic.
MAX_INTERVAL_SECONDS: Final = 366 * 86400
# ...and at most once a minute, as a cron expression can: a whole download of the feed each time
# (a provider's `1s` asked its own server and the poller for one a second).
MIN_INTERVAL_SECONDS: Final = 60
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str, *, minimum: int = MIN_INTERVAL_SECONDS) -> int:
    """Seconds of an interval such as `90s`, `15m`, `24h` or `1d` (bare: seconds), from
    `minimum` (a feed schedule's floor unless told) to 366 days."""
    match = _INTERVAL.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise FeedSettingInvalid(
            "/schedule", f"invalid interval {text[:40]!r}: use e.g. 90s, 15m, 24h, 1d"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_INTERVAL_SECONDS:
        raise FeedSettingInvalid("/schedule", "an interval may be at most 366d")
    if seconds < minimum:
        raise FeedSettingInvalid("/schedule", f"an interval must be at least {minimum}s")
    return seconds


def check_feed_url(url: str, policy: AddressPolicy) -> str:
    """An absolute http(s) URL whose host, if an IP literal in any form, the policy permits."""
    if len(url) > MAX_URL_LENGTH:
        raise FeedSettingInvalid("/url", f"must be at most {MAX_URL_LENGTH} characters")
    if _BLANK_OR_CONTROL.search(url) or any(unicodedata.category(c) == "Cf" for c in url):
        # urlsplit drops them at either end and tabs and line breaks anywhere, so the URL looked
        # valid, was stored as sent, and a trailing space was fetched as %20 (hybrid trial); a
        # zero-width space in the host passed the address check (IDNA drops it) and failed
        # every fetch (security trial).
        raise FeedSettingInvalid(
            "/url",
            "must not contain spaces, control characters or invisible ones such as a zero-width "
            "space (percent-encode one in a path: %20)",
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise FeedSettingInvalid("/url", "must be an absolute http or https URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise FeedSettingInvalid("/url", "must be an absolute http or https URL")
    try:
        port = parts.port  # ValueError: not a number, or out of 0-65535
    except ValueError:
        port = 0
    if port == 0:
        raise FeedSettingInvalid("/url", "has a port that is not a number from 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise FeedSettingInvalid("/url", "must not carry credentials: give them as the feed's auth")
    try:
        # The host the fetch connects to: `１２７.０.０.１` (full-width digits) reaches 127.0.0.1.
        mapped = connect_host(host)
    except UnicodeError:
        raise FeedSettingInvalid(
            "/url", f"has a host that is not a valid name: {host[:64]!r}"
        ) from None
    try:
        literal = policy.check_host_literal(mapped)
    except AddressRefused as exc:
        raise FeedSettingInvalid("/url", str(exc)) from exc
    if literal is None and not _host_name(host):
        raise FeedSettingInvalid("/url", f"has a host that is not a valid name: {host[:64]!r}")
    numeric = _NUMERIC_HOST.fullmatch(mapped) or isinstance(literal, IPv4Address)
    if numeric and str(literal) != mapped:
        # Permitted, yet written other than as the dotted quad: the HTTP client takes a host of
        # digits and dots only as a dotted-quad IPv4 address (2130706433, 127.1, 0177.0.0.1 are
        # refused there), and a hex form (0x7f.0.0.1) that the resolver would take is one the
        # policy should not have to read: one way to write an address, the one it is shown in.
        hint = f": write it {literal}" if literal is not None else ""
        raise FeedSettingInvalid(
            "/url", f"has a numeric host that is not a dotted-quad IPv4 address{hint}"
        )
    return url


_NUMERIC_HOST: Final = re.compile(r"[0-9.]+")
_BLANK_OR_CONTROL: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


# A host name's ASCII characters (an internationalised name's others are IDNA's to judge).
_HOST_ASCII: Final = re.compile(r"[a-z0-9._-]*")


def _host_name(host: str) -> bool:
    """Whether a fetch can look `host` up: ASCII letters, digits, `-`, `_` and `.` around other
    characters, and labels IDNA encodes (none empty, none over 63 characters, `xn--` well
    formed)."""
    if _HOST_ASCII.fullmatch("".join(c for c in host if c.isascii())) is None:
        return False
    try:
        host.rstrip(".").encode("idna").decode("idna")  # decoding checks `xn--` labels
    except UnicodeError:
        return False
    return True


def check_format(name: str) -> FeedFormat:
    try:
        fmt = FeedFormat(name)
    except ValueError:
        raise FeedSettingInvalid(
            "/format", f"must be one of {', '.join(f.value for f in FeedFormat)}"
        ) from None
    if fmt not in READABLE_FORMATS:
        readable = ", ".join(sorted(READABLE_FORMATS))
        raise FeedSettingInvalid(
            "/format", f"format {name!r} is not supported yet; supported: {readable}"
        )
    return fmt
