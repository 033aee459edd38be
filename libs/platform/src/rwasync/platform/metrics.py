"""The Prometheus metrics every service shares, in one place so their names and labels stay the
same across services (docs/api.md, "Metrics"); each service serves them on `/metrics`.

Metrics only one service has (feed runs, the price stream, the change relay) live with the code
that counts them, named with the same `rwasync_` prefix and unit suffixes.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import structlog
from prometheus_client import Counter, Gauge, Histogram

log = structlog.get_logger(__name__)

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Lags run from milliseconds (a healthy queue) to hours (a backlog, an old as_of).
LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
BATCH_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# HTTP, every service: by route template (never the raw path), method and status.
HTTP_REQUESTS = Counter(
    "rwasync_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "rwasync_http_request_seconds",
    "HTTP request latency, by route and status",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)

# Publishing, every publisher: outcome is confirmed, nacked, returned (unroutable), timeout,
# blocked (a broker alarm) or unavailable (not connected, channel closed).
MESSAGES_PUBLISHED = Counter(
    "rwasync_messages_published_total", "Broker publishes, by outcome", ["exchange", "outcome"]
)

# Consuming (reconciler, pricing): messages by what became of them (acked, requeued, nacked,
# malformed), events by decision, how many events a message carries, how long applying takes.
MESSAGES_CONSUMED = Counter(
    "rwasync_messages_consumed_total", "Broker messages consumed", ["queue", "outcome"]
)
EVENTS_DECIDED = Counter(
    "rwasync_events_decided_total",
    "Events decided (applied, stale_ignored, duplicate, rejected, held)",
    ["type", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "rwasync_events_dead_lettered_total", "Events sent to a dead-letter queue", ["queue"]
)
MESSAGE_EVENTS = Histogram(
    "rwasync_message_events", "Events per consumed message", ["queue"], buckets=BATCH_BUCKETS
)
APPLY_SECONDS = Histogram(
    "rwasync_apply_seconds",
    "Time to apply one message's events",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
TRANSIENT_RETRIES = Counter(
    "rwasync_apply_transient_retries_total", "Applies retried after a transient error", ["queue"]
)
# From the 202 (a feed item: its feed's timestamp) to the consumer's commit.
EVENT_LAG = Histogram(
    "rwasync_event_lag_seconds",
    "Time from an event's acceptance to its decision",
    ["queue"],
    buckets=LAG_BUCKETS,
)
# now − as_of when a tick is applied: how stale the prices investors see are.
PRICE_LAG = Histogram(
    "rwasync_price_lag_seconds",
    "Age of price ticks (now - as_of) when applied",
    buckets=LAG_BUCKETS,
)

# Queue depth, sampled by the consumers of each queue (every replica reports the same figure:
# aggregate with max, not sum).
QUEUE_MESSAGES = Gauge("rwasync_queue_messages", "Messages ready in a queue", ["queue"])
QUEUE_CONSUMERS = Gauge("rwasync_queue_consumers", "Consumers attached to a queue", ["queue"])

QueueDepths = Callable[[Sequence[str]], Awaitable[dict[str, tuple[int, int]]]]


def observe_each(histogram: Histogram, amounts: Iterable[float]) -> None:
    """`histogram.observe(amount)` for each amount (a labelled child or a histogram without
    labels; no exemplars), leaving the same state: one increment per bucket instead of one per
    amount (a consumer observes every event of a batch of hundreds: ~1.5 µs each). The sum is
    added to in the same order, so it is the same float. Reads the pinned prometheus-client's
    fields; `tests/unit/platform/test_metrics.py` holds the two equal, so an upgrade that moves
    them fails there."""
    buckets: Tally[int] = Tally()
    total = histogram._sum.get()
    for amount in amounts:
        total += amount
        buckets[bisect_left(histogram._upper_bounds, amount)] += 1  # the first bound >= amount
    histogram._sum.set(total)
    for index, count in buckets.items():
        histogram._buckets[index].inc(count)


async def sample_queue_depths(
    depths: QueueDepths,
    queues: Sequence[str],
    *,
    every: float = 10.0,
    on_sample: Callable[[dict[str, tuple[int, int]]], None] | None = None,
) -> None:
    """Keep the queue gauges current until cancelled; a failed sample is logged and retried,
    and the gauges of `queues` are dropped until one succeeds: kept, they showed the last
    figures as current through a broker outage (an operator's trial: two consumers and an
    empty queue while this replica had no connection). `on_sample` gets each sample too:
    (messages ready, consumers) by queue."""
    while True:
        try:
            sample = await depths(queues)
            for queue, (messages, consumers) in sample.items():
                QUEUE_MESSAGES.labels(queue).set(messages)
                QUEUE_CONSUMERS.labels(queue).set(consumers)
            if on_sample is not None:
                on_sample(sample)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is away: no figures rather than stale ones
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # aio-pika turned our cancellation into this error: honour it.
                raise asyncio.CancelledError from exc
            log.warning("queue depth not sampled", error=str(exc))
            for queue in queues:
                for gauge in (QUEUE_MESSAGES, QUEUE_CONSUMERS):
                    with contextlib.suppress(KeyError):  # never sampled yet
                        gauge.remove(queue)
        await asyncio.sleep(every)
