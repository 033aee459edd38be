"""The one way rwasync tries again: tenacity's retry loop with a capped exponential backoff (or a
fixed pause), each failed try logged with what failed and when the next one comes.

Connecting to Postgres and RabbitMQ, the poller's LISTEN connection, the consumer's transient
database errors, feed fetches and the migration's database creation all retry through here.
Cancellation is never retried, and the last failure is re-raised as itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential,
    wait_fixed,
)
from tenacity.wait import wait_base

log = structlog.get_logger(__name__)

# Each kind of retry (`what`) is logged at most once in this many seconds per process; the line
# counts the retries not logged since. A consumer's 64 held messages each retrying their apply
# while Postgres was away made 254 lines in 8 s (fault trial), none saying more than the first.
LOG_EVERY_SECONDS: Final = 5.0
_logged: dict[str, tuple[float, int]] = {}  # what -> (when last logged, retries not logged since)
# Kinds remembered at most (a feed fetch's kind names its URL): beyond, the memory starts anew.
_MAX_KINDS: Final = 1000


def _log_retry(what: str, error: BaseException, wait: float | None) -> None:
    now = time.monotonic()
    last, unlogged = _logged.get(what, (float("-inf"), 0))
    if now - last < LOG_EVERY_SECONDS:
        _logged[what] = (last, unlogged + 1)
        return
    if len(_logged) >= _MAX_KINDS and what not in _logged:
        _logged.clear()
    _logged[what] = (now, 0)
    fields: dict[str, object] = {"error": str(error) or repr(error), "retry_in": wait}
    if unlogged:
        fields["not_logged_since"] = unlogged
    log.warning(f"{what} failed, retrying", **fields)


def _always(_: BaseException) -> bool:
    return True


def retrying(
    what: str,
    *,
    retry_on: Callable[[BaseException], bool] = _always,
    initial: float = 0.2,
    cap: float = 5.0,
    fixed: float | None = None,
    attempts: int | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> AsyncRetrying:
    """Retry while `retry_on(error)`; waits `initial`, doubling up to `cap` (or `fixed` each
    time), for at most `attempts` tries (None: until it succeeds). Use it as
    `async for attempt in retrying(...): with attempt: ...`."""

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and retry_on(exc)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is None:
            return
        if on_retry is not None:
            on_retry(error)
        wait = state.next_action.sleep if state.next_action is not None else None
        _log_retry(what, error, wait)

    wait: wait_base = (
        wait_fixed(fixed) if fixed is not None else wait_exponential(multiplier=initial, max=cap)
    )
    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=stop_after_attempt(attempts) if attempts is not None else stop_never,
        before_sleep=before_sleep,
        sleep=asyncio.sleep,
        reraise=True,
    )
