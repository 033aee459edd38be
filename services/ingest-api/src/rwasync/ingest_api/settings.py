"""ingest-api settings (environment prefix RWASYNC_INGEST_)."""

from pydantic_settings import SettingsConfigDict

from rwasync.platform.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RWASYNC_INGEST_", extra="ignore", frozen=True)

    port: int = 8080
    # The largest body of a single-asset call (PUT/POST of one asset, one price); larger is a 413.
    max_body_bytes: int = 1024**2
    # How long a verified credential is trusted without asking the database again: the longest a
    # revocation or a disabled provider may take to bite, traded for auth in microseconds.
    auth_cache_seconds: float = 5.0
