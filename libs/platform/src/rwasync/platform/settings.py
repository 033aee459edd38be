"""Settings read from the environment: the shared addresses and each service's own prefix.

Every service and the CLI read `RWASYNC_DATABASE_URL` and `RWASYNC_AMQP_URL`; a service's own
settings carry its prefix (`RWASYNC_INGEST_PORT`, ...). Nothing else reads `os.environ`.
"""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/rwasync"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class CommonSettings(BaseSettings):
    """What every process shares. Subclasses set `env_prefix` for their own fields."""

    model_config = SettingsConfigDict(env_prefix="RWASYNC_", extra="ignore", frozen=True)

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


class ServiceSettings(CommonSettings):
    """Settings of a long-running service: where it listens and how it connects."""

    host: str = "0.0.0.0"
    port: int
    db_pool_min: int = 1
    db_pool_max: int = 10
    # Seconds to wait for a publisher confirm before answering 503.
    publish_timeout: float = 5.0
