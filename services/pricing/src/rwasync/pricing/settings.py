"""Pricing settings (environment prefix RWASYNC_PRICING_)."""

from rwasync.platform.settings import ServiceSettings, settings_config


class PricingSettings(ServiceSettings):
    model_config = settings_config("RWASYNC_PRICING_")

    port: int = 8082
    prefetch: int = 64
    # How long a reader token stays trusted in memory before it is looked up again.
    auth_cache_seconds: float = 5.0
