"""Settings read from the environment and from `.env`: the shared addresses and each service's
own prefix.

Every service and the CLI read `RWASYNC_DATABASE_URL` and `RWASYNC_AMQP_URL`; a service's own
settings carry its prefix (`RWASYNC_INGEST_PORT`, ...). Values come from the process environment
first, then from the `.env` file in the working directory (`make run` creates it from
`.env.example`, which documents every setting), then the defaults. `RWASYNC_ENV_FILE` names
another file. Nothing else reads `os.environ`.
"""

import os
import sys
from typing import Annotated, Final, Literal, NoReturn, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rwasync.platform.clients import parse_networks

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/rwasync"
DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"

# Read at import, before any settings class is built: the file every process takes settings from.
ENV_FILE: Final = os.environ.get("RWASYNC_ENV_FILE", ".env")

# A TCP port a service listens on, 0 for any free one (tests); a larger number would wrap around,
# modulo 65536, silently.
Port = Annotated[int, Field(ge=0, le=65535)]

S = TypeVar("S", bound=BaseSettings)


def settings_config(prefix: str) -> SettingsConfigDict:
    """The configuration of a settings class whose own fields carry `prefix`."""
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
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
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    # Seconds to wait for a publisher confirm before answering 503.
    publish_timeout: float = Field(5.0, gt=0)
    # Comma-separated CIDR ranges of reverse proxies in front of the service (a gateway, an
    # ingress): a request from one counts against the client `X-Forwarded-For` names, for the
    # limit on failed authentications. Empty: the peer's address counts.
    trusted_proxies: str = Field("", validation_alias="RWASYNC_TRUSTED_PROXIES")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidr_ranges(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _pool_bounds_in_order(self) -> Self:
        if self.db_pool_min > self.db_pool_max:
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"{prefix}DB_POOL_MIN ({self.db_pool_min}) is greater than "
                f"{prefix}DB_POOL_MAX ({self.db_pool_max})"
            )
        return self


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


def load_settings(settings_class: type[S]) -> S:
    """The settings of a service from its environment; a bad value ends the process at once with
    exit status 2 and one `error:` line per problem naming its variable, not a traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        _refuse(settings_class, exc)


def _refuse(settings_class: type[BaseSettings], exc: ValidationError) -> NoReturn:
    prefix = settings_class.model_config.get("env_prefix", "")
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        location = [str(part) for part in error["loc"]]
        if not location:  # a rule between settings: its message names them
            sys.stderr.write(f"error: {message}\n")
            continue
        # A field read under an alias of its own (RWASYNC_LOG_FORMAT) is located by that alias.
        name = location[0]
        if name in settings_class.model_fields:
            name = f"{prefix}{'_'.join(location).upper()}"
        sys.stderr.write(f"error: {name}: {message}\n")
    raise SystemExit(2)
