"""Polling with a deadline: end-to-end effects are asynchronous, tests wait for them, bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if accept(last):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s; last value: {last!r}")


async def get_status(http: aiohttp.ClientSession, url: str) -> int:
    """The status of a GET, or 0 when nothing answers (a probe while a service is away)."""
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0
