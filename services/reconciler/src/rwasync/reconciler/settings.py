"""Reconciler settings (environment prefix RWASYNC_RECONCILER_)."""

from pydantic_settings import SettingsConfigDict

from rwasync.platform.settings import ServiceSettings


class ReconcilerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RWASYNC_RECONCILER_", extra="ignore", frozen=True)

    port: int = 8083
    # Unacked messages in flight per replica; each may carry many events.
    prefetch: int = 64
