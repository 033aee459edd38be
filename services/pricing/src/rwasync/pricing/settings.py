"""Pricing settings (environment prefix RWASYNC_PRICING_)."""

from pydantic_settings import SettingsConfigDict

from rwasync.platform.settings import ServiceSettings


class PricingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RWASYNC_PRICING_", extra="ignore", frozen=True)

    port: int = 8082
    prefetch: int = 64
    # How long a reader token stays trusted in memory before it is looked up again.
    auth_cache_seconds: float = 5.0
