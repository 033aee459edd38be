"""The one retry helper: retries what it is told to, backs off, stops, and re-raises as itself."""

from __future__ import annotations

import asyncio

import pytest

from rwasync.platform.retry import retrying

pytestmark = pytest.mark.unit


class Flaky(Exception):
    pass


async def test_retries_until_success_with_growing_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    calls = 0
    async for attempt in retrying("test", initial=0.2, cap=1.0):
        with attempt:
            calls += 1
            if calls < 6:
                raise Flaky
    assert calls == 6
    assert pauses == [0.2, 0.4, 0.8, 1.0, 1.0]


async def test_an_error_it_should_not_retry_is_raised_at_once() -> None:
    calls = 0
    with pytest.raises(ValueError):
        async for attempt in retrying("test", retry_on=lambda e: isinstance(e, Flaky)):
            with attempt:
                calls += 1
                raise ValueError("poison")
    assert calls == 1


async def test_the_last_failure_is_raised_as_itself_after_the_attempts() -> None:
    calls = 0
    seen: list[BaseException] = []
    with pytest.raises(Flaky):
        async for attempt in retrying("test", fixed=0, attempts=3, on_retry=seen.append):
            with attempt:
                calls += 1
                raise Flaky
    assert calls == 3 and len(seen) == 2


async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        async for attempt in retrying("test"):
            with attempt:
                calls += 1
                raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await work()
    assert calls == 1
