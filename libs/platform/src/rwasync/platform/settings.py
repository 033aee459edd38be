"""Settings read from the environment and from `.env`: the shared addresses and each service's
own prefix.

Every service and the CLI read `RWASYNC_DATABASE_URL` and `RWASYNC_AMQP_URL`; a service's own
settings carry its prefix (`RWASYNC_INGEST_PORT`, ...). Values come from the process environment
first, then from the `.env` file in the working directory (`make run` creates it from
`.env.example`, which documents every setting), then the defaults. `RWASYNC_ENV_FILE` names
another file. Nothing else reads `os.environ`.

`load_settings` checks them all before a process does anything: every problem is one line
`error: VARIABLE: why (got 'value')` on stderr, rules between settings included, then exit
status 2. A secret's value is never shown (URLs are shown with their password masked).
"""

import base64
import binascii
import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from rwasync.schema.addresses import parse_networks

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/rwasync"
DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"

# Read at import, before any settings class is built: the file every process takes settings from.
ENV_FILE: Final = os.environ.get("RWASYNC_ENV_FILE", ".env")

# A TCP port a service listens on, 0 for any free one (tests); a larger number would wrap around,
# modulo 65536, silently.
Port = Annotated[int, Field(ge=0, le=65535)]

S = TypeVar("S", bound="CommonSettings")

# The levels `RWASYNC_LOG_LEVEL` takes (any case).
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Settings whose value may hold a password: shown with it masked, never whole.
_URL_SETTINGS: Final = frozenset({"database_url", "amqp_url", "rabbitmq_management_url"})

FERNET_KEY_HINT: Final = (
    "a Fernet key is 32 bytes in url-safe base64 (44 characters ending in '='); "
    "make one with `rwasync feed secrets-key`"
)


class Conflict(ValueError):
    """Settings each valid alone that break a rule together; `fields[0]` is the one reported,
    its message naming the others' variables."""

    def __init__(self, message: str, field: str, *others: str) -> None:
        super().__init__(message)
        self.fields = (field, *others)


class Conflicts(ValueError):
    """Every rule between settings that is broken, raised at once."""

    def __init__(self, found: list[Conflict], settings: "CommonSettings") -> None:
        super().__init__(
            "; ".join(f"{settings.variable(conflict.fields[0])}: {conflict}" for conflict in found)
        )
        self.found = found
        self.settings = settings


# --- checks of one value ---------------------------------------------------------------------


def check_log_level(value: str) -> str:
    """The level in capitals; a ValueError naming the known ones for any other."""
    level = value.strip()
    level = level.upper() if level.isascii() else level  # `ınfo` is no INFO
    if level not in LOG_LEVELS:
        raise ValueError(f"not a log level: use one of {', '.join(LOG_LEVELS)}")
    return level


def _check_url(url: str, schemes: tuple[str, ...], *, host_required: bool) -> None:
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed `[` of an IPv6 address
        raise ValueError(f"not a valid {expected} URL: its host cannot be read") from None
    if parts.scheme not in schemes or not url.lower().startswith(f"{parts.scheme}://"):
        article = "an" if schemes[0][0] in "ah" else "a"  # an amqp://, an http://
        raise ValueError(f"not {article} {expected} URL")
    try:
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError:  # (its message would quote the text, which may be a password's end)
        raise ValueError(
            f"not a valid {expected} URL: its port is not a number from 0 to 65535"
        ) from None
    if host_required and not parts.hostname:
        raise ValueError(f"not a valid {expected} URL: it names no host")


def check_database_url(value: str) -> str:
    """A URL asyncpg connects with: postgresql:// (or postgres://)."""
    _check_url(value.strip(), ("postgresql", "postgres"), host_required=False)
    return value


def check_amqp_urls(value: str) -> str:
    """One amqp:// or amqps:// URL, or several (the nodes of a cluster) comma-separated."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker URL given")
    for n, url in enumerate(urls, 1):
        try:
            _check_url(url, ("amqp", "amqps"), host_required=True)
            _check_heartbeat(url)
        except ValueError as exc:
            raise ValueError(
                f"URL {n} of {len(urls)}: {exc}" if len(urls) > 1 else str(exc)
            ) from None
    return value


def _check_heartbeat(url: str) -> None:
    """A `heartbeat` the URL names is whole seconds (0-65535); aiormq read `?heartbeat=abc` as
    none at all, silently (operator trial)."""
    for value in parse_qs(urlsplit(url).query, keep_blank_values=True).get("heartbeat", []):
        if not (value.isascii() and value.isdigit() and int(value) <= 65535):
            raise ValueError("its heartbeat is not a whole number of seconds from 0 to 65535")


def check_fernet_keys(value: str) -> str:
    """Comma-separated Fernet keys, or none. The message never holds a key."""
    keys = [key.strip() for key in value.split(",") if key.strip()]
    for n, key in enumerate(keys, 1):
        which = f"key {n} of {len(keys)}" if len(keys) > 1 else "the key"
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise ValueError(f"{which} is not url-safe base64; {FERNET_KEY_HINT}") from None
        if len(raw) != 32:
            raise ValueError(f"{which} decodes to {len(raw)} bytes; {FERNET_KEY_HINT}")
    return value


# The largest number any setting takes unless its field says less: a float setting is a duration,
# a rate or a share (a billion seconds is 31 years), an int one a count or a size in bytes. Past
# them a value is a typo, and one that overflowed later (a timedelta, a Postgres interval) ended
# the service with a traceback, or took effect as "never" (operator trial).
MAX_FLOAT_SETTING: Final = 1e9
MAX_INT_SETTING: Final = 10**12
# A host a service listens on: an IP address, or a name (letters, digits, hyphens, dots).
_HOST_NAME: Final = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def check_listen_host(value: str) -> str:
    """An address to listen on: an IPv4 or IPv6 address or a host name."""
    host = value.strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if host.replace(".", "").isdigit():
        raise ValueError("not an IPv4 address (four numbers from 0 to 255)")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError("not an IP address or a host name")
    return host


# --- showing a value without its secrets ---------------------------------------------------


def redact_urls(value: str) -> str | None:
    """`value` (one URL or several, comma-separated) fit to show: each URL's scheme, user, host,
    port and path, its password masked and its query left out (`?password=` is a libpq form).
    None when a part is not a URL one can take apart: it is not shown at all, since a password
    in it cannot be told from the rest."""
    shown = [_redact_url(part.strip()) for part in value.split(",") if part.strip()]
    if not shown or None in shown:
        return None
    return ",".join(part for part in shown if part is not None)


def _redact_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not url.lower().startswith(f"{parts.scheme}://"):
        return None
    if "@" in parts.path + parts.query + parts.fragment:  # a password holding `/`, `?` or `#`
        return None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if any(char.isspace() for char in hostport + user):
        return None
    login = f"{user}{':***' if colon else ''}{at}"
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{login}{hostport}{parts.path}{query}"


# --- the settings classes --------------------------------------------------------------------


def settings_config(prefix: str) -> SettingsConfigDict:
    """The configuration of a settings class whose own fields carry `prefix`. `inf` and `nan`
    are no number a setting takes (`inf` seconds of credential cache kept a revoked key working
    for ever: operator trial)."""
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        allow_inf_nan=False,
    )


class CommonSettings(BaseSettings):
    """What every process shares. Subclasses set `env_prefix` for their own fields."""

    model_config = settings_config("RWASYNC_")

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="RWASYNC_DATABASE_URL")
    amqp_url: str = Field(DEFAULT_AMQP_URL, validation_alias="RWASYNC_AMQP_URL")
    log_level: str = Field("INFO", validation_alias="RWASYNC_LOG_LEVEL")
    # `console` is readable in a terminal; `json` is one JSON object a line for log shippers.
    log_format: Literal["console", "json", "auto"] = Field(
        "auto", validation_alias="RWASYNC_LOG_FORMAT"
    )
    # Comma-separated CIDR ranges that feed URLs may point into although they are loopback or
    # private (`make run` allows 127.0.0.0/8 and ::1 for the demo provider). Empty: none.
    feed_allowed_networks: str = Field("", validation_alias="RWASYNC_FEED_ALLOWED_NETWORKS")
    # Fernet keys (comma-separated; the first seals, all open) that seal feed credentials at rest.
    # Empty: feeds that carry credentials cannot be registered.
    feed_secrets_key: SecretStr = Field(SecretStr(""), validation_alias="RWASYNC_FEED_SECRETS_KEY")
    # RabbitMQ's management API with its credentials (http://user:password@host:15672), for
    # `rwasync status`; empty: queue figures come from the AMQP connection (passive declares).
    rabbitmq_management_url: SecretStr = Field(
        SecretStr(""), validation_alias="RWASYNC_RABBITMQ_MANAGEMENT_URL"
    )

    @field_validator("*")
    @classmethod
    def _within_reason(cls, value: Any) -> Any:
        if type(value) is float and value > MAX_FLOAT_SETTING:
            raise ValueError(f"must be at most {MAX_FLOAT_SETTING:.0f}")
        if type(value) is int and value > MAX_INT_SETTING:
            raise ValueError(f"must be at most {MAX_INT_SETTING}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return check_log_level(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls(cls, value: str) -> str:
        return check_amqp_urls(value)

    @field_validator("feed_allowed_networks")
    @classmethod
    def _allowed_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("feed_secrets_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        check_fernet_keys(value.get_secret_value())
        return value

    @field_validator("rabbitmq_management_url")
    @classmethod
    def _management_url(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip():
            _check_url(value.get_secret_value().strip(), ("http", "https"), host_required=True)
        return value

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable `field` is read from."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, str):
            return alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            return alias.choices[0]
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    def conflicts(self) -> Iterator[Conflict]:
        """The rules between settings that this one breaks (subclasses add theirs)."""
        return iter(())

    @model_validator(mode="after")
    def _rules_between_settings_hold(self) -> Self:
        found = list(self.conflicts())
        if found:
            raise Conflicts(found, self)
        return self


class ServiceSettings(CommonSettings):
    """Settings of a long-running service: where it listens and how it connects."""

    host: str = "0.0.0.0"
    port: Port
    # A connection must send a complete request head within this many seconds of connecting or
    # of its last answer, else it is closed (slow-loris clients, idle keep-alive connections).
    http_idle_timeout: float = Field(75.0, gt=0)
    # The asyncio event loop the service runs on: uvloop (libuv; less CPU per socket read and
    # write, per callback and per timer) or the standard library's.
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", validation_alias="RWASYNC_EVENT_LOOP"
    )
    db_pool_min: int = Field(1, ge=0, le=1000)
    db_pool_max: int = Field(10, ge=1, le=1000)
    # Seconds to wait for a publisher confirm before answering 503.
    publish_timeout: float = Field(5.0, gt=0)
    # Comma-separated CIDR ranges of reverse proxies in front of the service (a gateway, an
    # ingress): a request from one counts against the client `X-Forwarded-For` names, for the
    # limit on failed authentications. Empty: the peer's address counts.
    trusted_proxies: str = Field("", validation_alias="RWASYNC_TRUSTED_PROXIES")

    @field_validator("host")
    @classmethod
    def _listen_host(cls, value: str) -> str:
        return check_listen_host(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidr_ranges(cls, value: str) -> str:
        parse_networks(value)
        return value

    def conflicts(self) -> Iterator[Conflict]:
        yield from super().conflicts()
        if self.db_pool_min > self.db_pool_max:
            yield Conflict(
                f"must be at most {self.variable('db_pool_max')} ({self.db_pool_max})",
                "db_pool_min",
                "db_pool_max",
            )


class ConsumerSettings(ServiceSettings):
    """Settings of a service that consumes a work queue (the reconciler, pricing)."""

    # Unacknowledged broker messages in flight per replica; each may carry many events.
    prefetch: int = Field(64, ge=1)
    # Applies (transactions) under way at once per replica (the reconciler's: for all its
    # replicas together, `EventConsumer`'s `concurrency_shared`). Messages that arrive while all are
    # busy wait and are applied together, many per transaction (group commit): fewer at once
    # make bigger groups, which pays when each round trip to the database is slow or when the
    # batches contend for the same lock stripes. The reconciler's 100,000-event drain on 2 cores
    # was fastest with 2 (18.2-19.6k events/s; 12.6-12.9k with 10).
    applies_at_once: int = Field(2, ge=1)
    # Seconds an apply that would take a small group (under 250 events, or under
    # `apply_group_events` if that is smaller) waits first for more messages to join it; 0
    # applies at once. Under a light, steady load of small messages (single pushes) a short wait
    # makes far fewer, larger transactions.
    apply_linger: float = Field(0.0, ge=0, le=1.0)
    # Events one apply takes at most when messages wait: they are applied together up to this
    # many (a larger message goes alone, never split).
    apply_group_events: int = Field(250, ge=1, le=20_000)
    # Seconds applies may fail for want of the database before this replica stops taking
    # messages and hands back those it holds, so that a replica that can reach the database
    # applies them; it consumes again once the database answers. Each hand-back counts as a
    # delivery towards the queue's limit of 10.
    hand_back_after: float = Field(15.0, ge=1.0, le=3600.0)


# --- loading: every problem at once, then exit 2 --------------------------------------------


def load_settings(settings_class: type[S]) -> S:
    """The settings of a process from its environment. Bad values end the process at once with
    exit status 2 and one `error: VARIABLE: why (got 'value')` line on stderr per problem, all
    of them (a rule between two settings too, unless one of the two is itself bad), never a
    traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        problems = settings_problems(settings_class, exc)
    for line in problems:
        sys.stderr.write(f"error: {line}\n")
    raise SystemExit(2)


def settings_problems(settings_class: type[CommonSettings], exc: ValidationError) -> list[str]:
    """One `VARIABLE: why (got 'value')` line per problem of `exc`; where some settings are bad,
    the rules between the others are checked too, so that one run shows every problem."""
    problems: list[str] = []
    bad: dict[str, FieldInfo] = {}
    for error in exc.errors(include_url=False):
        if not error["loc"]:
            problems.extend(_conflict_lines(settings_class, error, frozenset()))
            continue
        field = _field_named(settings_class, str(error["loc"][0]))
        if field is None:  # not a field of ours: say what pydantic said
            problems.append(f"{error['loc'][0]}: {error['msg']}")
            continue
        bad[field] = settings_class.model_fields[field]
        why = _why(error)
        problems.append(f"{settings_class.variable(field)}: {why}{_shown(field, error['input'])}")
    if bad:
        problems.extend(_conflicts_between_the_rest(settings_class, bad))
    return problems


def _field_named(settings_class: type[CommonSettings], location: str) -> str | None:
    # A field read under an alias of its own (RWASYNC_LOG_FORMAT) is located by that alias.
    if location in settings_class.model_fields:
        return location
    for name, info in settings_class.model_fields.items():
        alias = info.validation_alias
        if alias == location or (isinstance(alias, AliasChoices) and location in alias.choices):
            return name
    return None


def _why(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "value_error":
        return str(ctx["error"])
    bounds = {
        "less_than_equal": ("must be at most", "le"),
        "less_than": ("must be less than", "lt"),
        "greater_than_equal": ("must be at least", "ge"),
        "greater_than": ("must be greater than", "gt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"{words} {bound}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "not a whole number"
    if kind in ("float_parsing", "float_type"):
        return "not a number"
    if kind == "finite_number":
        return "not a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return "not true or false"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "missing":
        return "must be set"
    return str(error["msg"])


def _shown(field: str, value: object) -> str:
    """` (got 'value')` for a problem's value, a URL with its password masked; nothing for a
    secret."""
    if isinstance(value, SecretStr) or field == "feed_secrets_key":
        return ""
    text: str | None = str(value)
    if field in _URL_SETTINGS:
        text = redact_urls(str(value))
    return "" if text is None else f" (got {text!r})"


def _conflict_lines(
    settings_class: type[CommonSettings], error: Any, bad: frozenset[str]
) -> list[str]:
    found = error.get("ctx", {}).get("error")
    if not isinstance(found, Conflicts):
        return [str(error["msg"]).removeprefix("Value error, ")]
    lines = []
    for conflict in found.found:
        if bad.intersection(conflict.fields):
            continue
        field = conflict.fields[0]
        shown = _shown(field, getattr(found.settings, field))
        lines.append(f"{settings_class.variable(field)}: {conflict}{shown}")
    return lines


def _conflicts_between_the_rest(
    settings_class: type[CommonSettings], bad: dict[str, FieldInfo]
) -> list[str]:
    """The rules broken between the settings that are not bad: the settings read again with the
    bad ones at their defaults, leaving out the rules that involve a bad one."""
    defaults: dict[str, Any] = {}
    for field, info in bad.items():
        default = info.get_default(call_default_factory=True)
        if default is PydanticUndefined:
            return []
        alias = info.validation_alias
        defaults[alias if isinstance(alias, str) else field] = default
    try:
        settings_class(**defaults)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            if not error["loc"]:
                lines.extend(_conflict_lines(settings_class, error, frozenset(bad)))
        return lines
    return []
