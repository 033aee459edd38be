"""What the observability costs, in-process: one JSON log line (the `request answered` line with
a request's bound fields), the HTTP metrics of one request, one lag observation, and a DEBUG call
that the level filters out. Run: .venv/bin/python -m benchmarks.observability_overhead"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable

import structlog

from rwasync.platform.logging import configure_logging
from rwasync.platform.metrics import EVENT_LAG, HTTP_LATENCY, HTTP_REQUESTS

ROUNDS = 20_000
ROUTE = "/v1/assets/{id}"


def per_call_us(work: Callable[[], None]) -> float:
    began = time.perf_counter()
    for _ in range(ROUNDS):
        work()
    return (time.perf_counter() - began) / ROUNDS * 1e6


def http_metrics() -> None:
    """What the middleware records per request."""
    HTTP_REQUESTS.labels(ROUTE, "PUT", "202").inc()
    HTTP_LATENCY.labels(ROUTE, "PUT", "202").observe(0.001)


def main() -> None:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        configure_logging("bench", "INFO", "json")
        log = structlog.get_logger("bench")
        structlog.contextvars.bind_contextvars(
            trace_id="5c1a0e2f9b7d4c3a8e6f1d2b3c4a5e6f",
            provider_id="prv_521ed407512171bb",
            asset_id="traced-1",
            event_id="925b1cc0-a657-40c1-817f-dad53cbc2f75",
        )
        line = per_call_us(
            lambda: log.info("request answered", method="PUT", route=ROUTE, status=202, ms=1.2)
        )
        http = per_call_us(http_metrics)
        lag = EVENT_LAG.labels("bench")
        observe = per_call_us(lambda: lag.observe(0.5))
        filtered = per_call_us(lambda: log.debug("event handled", asset_id="a"))
    print(
        f"JSON log line {line:.1f} us; HTTP metrics per request {http:.1f} us; "
        f"lag observation {observe:.2f} us; filtered DEBUG call {filtered:.2f} us",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
