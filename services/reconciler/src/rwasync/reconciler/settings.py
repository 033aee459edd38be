"""Reconciler settings (environment prefix RWASYNC_RECONCILER_)."""

from rwasync.platform.settings import ServiceSettings, settings_config


class ReconcilerSettings(ServiceSettings):
    model_config = settings_config("RWASYNC_RECONCILER_")

    port: int = 8083
    # Unacked messages in flight per replica; each may carry many events.
    prefetch: int = 64
