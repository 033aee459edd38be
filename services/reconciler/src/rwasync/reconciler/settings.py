"""Reconciler settings (environment prefix RWASYNC_RECONCILER_)."""

from pydantic import Field

from rwasync.platform.settings import ConsumerSettings, Port, settings_config


class ReconcilerSettings(ConsumerSettings):
    model_config = settings_config("RWASYNC_RECONCILER_")

    port: Port = 8083
    # Transactions a batch of events is applied in side by side, each over its own share of the
    # asset lock stripes (`AssetApplier`): how many Postgres backends one replica keeps at work.
    apply_shares: int = Field(2, ge=1, le=128)
    # Seconds an apply of under 250 events first waits for more messages to join it (see
    # ConsumerSettings): single pushes arrive as small messages, and applying every few of
    # them alone cost ~20 % more of the machine's CPU per push (benchmarks.ingest).
    apply_linger: float = Field(0.05, ge=0, le=1.0)
    # Events one apply takes at most when messages wait (see ConsumerSettings). A backlog of
    # 500-event messages drained at 18-21k events/s applied one message at a time (250) and at
    # 29-32k applied 16 at a time: each transaction's fixed cost (lock and COPY round trips,
    # planning, commit) is paid per 4,000 events a share instead of 250 (benchmarks.reconciler).
    apply_group_events: int = Field(8000, ge=1, le=20_000)
    # The outbox relay: seconds between looks for new changes when idle, entries read per look,
    # entries per `asset.changed` message.
    relay_interval: float = Field(0.2, gt=0)
    relay_page_size: int = Field(2000, ge=1, le=50_000)
    relay_changes_per_message: int = Field(500, ge=1, le=5000)
    # How long the change feed (and the audit it is) keeps entries; at least 7 days.
    change_retention_days: float = Field(7.0, ge=7.0, le=36_500)
