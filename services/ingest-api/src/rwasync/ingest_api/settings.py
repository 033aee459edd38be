"""ingest-api settings (environment prefix RWASYNC_INGEST_)."""

from rwasync.platform.settings import ServiceSettings, settings_config


class IngestSettings(ServiceSettings):
    model_config = settings_config("RWASYNC_INGEST_")

    port: int = 8080
    # The largest body of a single-asset call (PUT/POST of one asset, one price); larger is a 413.
    max_body_bytes: int = 1024**2
    # How long a verified credential is trusted without asking the database again: the longest a
    # revocation or a disabled provider may take to bite, traded for auth in microseconds.
    auth_cache_seconds: float = 5.0
