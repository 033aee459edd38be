"""Pricing settings (environment prefix RWASYNC_PRICING_)."""

from pydantic import Field

from rwasync.platform.settings import ConsumerSettings, Port, settings_config


class PricingSettings(ConsumerSettings):
    model_config = settings_config("RWASYNC_PRICING_")

    port: Port = 8082
    # Applies under way at once (see ConsumerSettings). Measured on 2 cores with 250-tick
    # messages, pricing's Postgres spent 51 µs a tick with 10 at once and 73 with 2.
    applies_at_once: int = Field(10, ge=1)
    # Transactions a message's ticks are applied in side by side, each over its own share of the
    # price lock stripes (`PriceApplier`): how many Postgres backends one apply keeps at work.
    apply_shares: int = Field(2, ge=1, le=128)
    # How long a reader token stays trusted in memory before it is looked up again.
    auth_cache_seconds: float = Field(5.0, ge=0, le=3600)
    # Failed authentications one client may make within a minute before it gets 429.
    auth_failures_per_minute: int = Field(20, ge=1)
    # Stream: price events a subscriber may fall behind by before it is closed as a slow consumer.
    # At least 128: the hub offers changes in slices of 64 between the subscribers' writes.
    stream_queue_size: int = Field(1000, ge=128)
    # Stream: the longest silence before a `: keep-alive` comment.
    stream_keepalive_seconds: float = Field(15.0, gt=0)
    # Stream: the kernel send buffer of each stream connection, so that a stalled subscriber is
    # found out after about this many bytes plus `stream_queue_size` events.
    stream_send_buffer_bytes: int = Field(65536, ge=4096)
    # Stream: a subscriber whose socket takes no data for this long is cut off.
    stream_send_timeout: float = Field(30.0, gt=0)
    # Stream: how often the change log is read when no wake-up arrives (broker away, or a change
    # logged by the operator CLI, which publishes none).
    stream_poll_seconds: float = Field(1.0, gt=0)
    # How long price changes are kept for `Last-Event-ID` resume (at least a day).
    change_retention_seconds: float = Field(90000.0, ge=86400.0)
