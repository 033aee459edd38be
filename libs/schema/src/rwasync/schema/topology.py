"""Broker names in one place: exchanges, queues, routing keys and queue arguments."""

from typing import Final

ASSETS_EXCHANGE: Final = "rwasync.assets"
PRICES_EXCHANGE: Final = "rwasync.prices"
DEAD_LETTER_EXCHANGE: Final = "rwasync.dead-letter"
# Applied asset changes for consumers inside the platform (the outbox relay publishes them).
CHANGES_EXCHANGE: Final = "rwasync.changes"

RECONCILER_QUEUE: Final = "rwasync.reconciler.assets"
PRICING_QUEUE: Final = "rwasync.pricing.prices"
# Every work queue, each with its dead-letter queue, and the exchange a replay publishes to.
WORK_QUEUES: Final = (RECONCILER_QUEUE, PRICING_QUEUE)

# Routing keys: one per event type, plus the batch keys for messages that carry many events.
ASSET_ROUTING_PATTERN: Final = "asset.#"
PRICE_ROUTING_PATTERN: Final = "price.#"
ASSET_BATCH_KEY: Final = "asset.batch"
PRICE_BATCH_KEY: Final = "price.batch"
# `asset.changed.<provider_id>`: a message of one provider's applied changes, oldest first.
ASSET_CHANGED_PREFIX: Final = "asset.changed"

# A message delivered this many times without an ack (it crashed or stalled its consumer each time)
# is dead-lettered by the broker itself. An event that fails to apply never gets that far: the
# consumer dead-letters it at once, alone, with its reason.
DELIVERY_LIMIT: Final = 10

# The size a message of many events is cut at. RabbitMQ refuses a message over its
# `max_message_size` (16 MiB by default from 4.0, 128 MiB before) and closes the channel that
# sent it; events are counted per message elsewhere, and a thousand large documents exceed that.
# A message of one event is sent whatever its size (a document is at most about 1 MiB).
MESSAGE_BYTES_BUDGET: Final = 4 * 1024 * 1024

# Message headers.
HEADER_REASON: Final = "x-rwasync-reason"
HEADER_ORIGIN_QUEUE: Final = "x-rwasync-queue"
HEADER_EVENT_COUNT: Final = "x-rwasync-events"
HEADER_DEAD_LETTERED_AT: Final = "x-rwasync-dead-lettered-at"
HEADER_PROVIDER_ID: Final = "x-rwasync-provider-id"
# How many times the dead-lettered message had been delivered (the consumer's own dead letters).
HEADER_DELIVERIES: Final = "x-rwasync-deliveries"
# The trace of the request or feed run that produced a message (the events' `trace_id`), so the
# consumer's log lines join it; also as a W3C `traceparent` when the id is one (32 hex digits).
HEADER_TRACE_ID: Final = "x-rwasync-trace-id"
HEADER_TRACEPARENT: Final = "traceparent"


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of a work queue; also its routing key on the dead-letter exchange."""
    return f"{queue}.dlq"


def replay_target(queue: str) -> tuple[str, str]:
    """Where a dead letter of `queue` is published again: its exchange and the batch key."""
    targets = {
        RECONCILER_QUEUE: (ASSETS_EXCHANGE, ASSET_BATCH_KEY),
        PRICING_QUEUE: (PRICES_EXCHANGE, PRICE_BATCH_KEY),
    }
    return targets[queue]


def asset_changed_key(provider_id: str) -> str:
    return f"{ASSET_CHANGED_PREFIX}.{provider_id}"


def work_queue_arguments(queue: str) -> dict[str, str | int]:
    """Arguments of every work queue: quorum, bounded redelivery, at-least-once dead-lettering."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": dead_letter_queue(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments() -> dict[str, str | int]:
    return {"x-queue-type": "quorum"}


# Applied price changes: pricing publishes a wake-up here after each commit that changed a latest
# price; every pricing process binds one exclusive, auto-delete queue of its own and fans the
# changes out to its stream subscribers in memory (never a queue per subscriber).
PRICE_CHANGES_EXCHANGE: Final = "rwasync.prices.changed"
