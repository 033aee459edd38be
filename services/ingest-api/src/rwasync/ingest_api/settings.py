"""ingest-api settings (environment prefix RWASYNC_INGEST_)."""

from collections.abc import Iterator

from pydantic import Field

from rwasync.platform.settings import (
    MAX_INT_SETTING,
    Conflict,
    Port,
    ServiceSettings,
    settings_config,
)
from rwasync.schema.errors import MAX_ITEM_BYTES


class IngestSettings(ServiceSettings):
    model_config = settings_config("RWASYNC_INGEST_")

    port: Port = 8080
    # The largest body of a single-item call (one asset, a patch, a deletion, one price, one
    # validation); larger is a 413. Also the largest item of a batch, a feed previewed and (read
    # by feed-poller too) a feed: a larger one is rejected as that item.
    max_body_bytes: int = Field(MAX_ITEM_BYTES, ge=1024)
    # The largest body of a batch call (`POST /v1/assets/batch`, `POST /v1/prices`,
    # `POST /v1/validate/batch`).
    max_batch_body_bytes: int = Field(16 * 1024**2, ge=1024)
    # Seconds a request's body may take to arrive in full; slower is a 408 (a slow client holds
    # no worker meanwhile, only its connection).
    body_timeout: float = Field(30.0, gt=0)
    # Bytes of batch calls' bodies one process holds at once, counted as they arrive (as read,
    # decoded) until their answers are made; at least `max_batch_body_bytes`. A body that does
    # not fit waits for room within its `body_timeout`, then is a 503 with Retry-After. A batch
    # costs the process about ten times its body until answered (more when most of its items
    # are invalid); the default is one full batch.
    body_bytes_at_once: int = Field(16 * 1024**2, ge=1024, le=MAX_INT_SETTING)
    # How long a verified credential is trusted without asking the database again: the longest a
    # revocation or a disabled provider may take to bite, traded for auth in microseconds.
    auth_cache_seconds: float = Field(5.0, ge=0, le=3600)
    # Failed authentications one client address may make per minute before getting 429.
    auth_failures_per_minute: int = Field(20, ge=1)
    # A provider's request rate when the operator set none (`rwasync provider rate`): requests
    # per second sustained, and how many may come at once (a token bucket per provider and
    # process).
    rate_per_second: float = Field(200.0, gt=0)
    rate_burst: int = Field(400, ge=1)
    # Asset events per broker message for `POST /v1/assets/batch`; the chunks of one batch are
    # published concurrently, so their confirms are pipelined. Fewer, larger messages cost
    # ingest-api, the broker and the reconciler (which applies up to 8,000 events at once) less:
    # 1,000-asset batches cost the machine 56-63 µs an asset with 1,000, 59-75 with 250.
    events_per_message: int = Field(1000, ge=1, le=5000)
    # Price ticks per broker message for `POST /v1/prices`: pricing applies up to 250 ticks at
    # once (its APPLY_GROUP_EVENTS), and a larger message alone.
    price_events_per_message: int = Field(250, ge=1, le=5000)
    # Concurrent single-item requests share broker messages: at most this many events per
    # message, and at most `publishers` such messages awaiting their confirm at once.
    coalesce_max_events: int = Field(500, ge=1, le=5000)
    publishers: int = Field(2, ge=1, le=64)
    # How long a request waits for another still-running request with the same Idempotency-Key
    # before answering 409; and how long keys are kept (at least 24 h).
    idempotency_wait_seconds: float = Field(10.0, gt=0)
    idempotency_retention_hours: float = Field(24.0, ge=24, le=876_000)
    # How long a decided receipt is kept after its event was accepted (then `GET
    # /v1/events/{id}` is a 404); 0 keeps receipts for ever. At least as long as idempotency keys:
    # a repeated request's answer names its event, whose receipt must still be there.
    receipt_retention_hours: float = Field(168.0, ge=0, le=876_000)
    # Processes serving the port (SO_REUSEPORT lets each accept on it; 1: just this process).
    processes: int = Field(1, ge=1, le=64)
    # Bind with SO_REUSEPORT even with one process, so separately started replicas share the
    # port (implied when `processes` > 1).
    reuse_port: bool = False
    # Sharing the port, a process only starts listening once Postgres and RabbitMQ answer, for at
    # most this many seconds (then it listens anyway, and its /readyz says what is missing): the
    # kernel hands connections to every listener, and a process still connecting would refuse
    # writes with 503 while another's /readyz already said ready.
    shared_port_ready_wait: float = Field(10.0, ge=0)
    # `POST /v1/validate/feed` with a URL fetches the feed as a run would (the address policy of
    # `RWASYNC_FEED_ALLOWED_NETWORKS`, the run's caps on body, decoded size and items), but
    # answers within the request: one try, and at most `feed_preview_timeout` seconds for it.
    feed_preview_timeout: float = Field(120.0, gt=0)
    feed_preview_tries: int = Field(1, ge=1, le=3)
    feed_preview_max_body_bytes: int = Field(512 * 1024**2, gt=0)
    feed_preview_max_decoded_bytes: int = Field(2 * 1024**3, gt=0)
    feed_preview_max_items: int = Field(2_000_000, gt=0)
    # A preview keeps each item's id, version and hash in memory while it compares: previews
    # running at once in one process are bounded by this; one more answers 503.
    feed_previews_at_once: int = Field(2, ge=1)

    def conflicts(self) -> Iterator[Conflict]:
        yield from super().conflicts()
        # A repeated request's answer names its event, whose receipt must still be there.
        if 0 < self.receipt_retention_hours < self.idempotency_retention_hours:
            yield Conflict(
                "must be 0 (keep for ever) or at least "
                f"{self.variable('idempotency_retention_hours')} "
                f"({self.idempotency_retention_hours})",
                "receipt_retention_hours",
                "idempotency_retention_hours",
            )
        # A batch's body holds its bytes as they arrive: a smaller budget than the largest body
        # would leave that body waiting for itself.
        if self.body_bytes_at_once < self.max_batch_body_bytes:
            yield Conflict(
                f"must be at least {self.variable('max_batch_body_bytes')} "
                f"({self.max_batch_body_bytes})",
                "body_bytes_at_once",
                "max_batch_body_bytes",
            )
