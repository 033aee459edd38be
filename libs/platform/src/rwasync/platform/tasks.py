"""Stopping background tasks for certain.

`task.cancel(); await task` can wait forever: aio-pika (aiormq) turns a cancellation that lands
mid-RPC (a channel open, a queue declare) into an ordinary exception or drops it, so a loop that
retries on exceptions — a sampler, a reconnect loop — swallows the cancellation and keeps going.
That hung a consumer's shutdown (and a test) for minutes under load. `cancel_and_wait` cancels
again while the task lives, and gives up after a bound instead of hanging the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

# How long a cancelled task gets before it is cancelled again (a swallowed cancellation).
RECANCEL_EVERY: Final = 0.2


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, timeout: float = 10.0) -> bool:
    """Cancel `task` and wait until it ends, cancelling again every `RECANCEL_EVERY` seconds
    while it lives; return whether it ended within `timeout` (it is logged when it did not).
    Whatever the task ended with (cancellation, an error) is not raised here: the caller is
    stopping it."""
    if task is None or task.done():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning("task did not stop when cancelled", task=task.get_name())
            return False
        await asyncio.wait({task}, timeout=min(RECANCEL_EVERY, left))
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
    return True
