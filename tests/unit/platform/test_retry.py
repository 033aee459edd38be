"""The one retry helper: retries what it is told to, backs off, stops, and re-raises as itself."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from rwasync.platform import retry
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


async def _fail_once(what: str) -> None:
    """One retry of `what`, then its failure."""
    with contextlib.suppress(Flaky):
        async for attempt in retrying(what, fixed=0, attempts=2):
            with attempt:
                raise Flaky


async def test_many_retries_of_one_kind_make_one_line_in_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer's held messages each retrying their apply while Postgres was away made 254
    lines in 8 s (fault trial). One kind of retry is logged once in LOG_EVERY_SECONDS, the next
    line counting those not logged; others keep their own lines."""
    clock = [1000.0]
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retry, "_logged", {})
    with capture_logs() as logs:
        for what in ["apply"] * 40 + ["broker connect"]:
            await _fail_once(what)
        clock[0] += retry.LOG_EVERY_SECONDS
        await _fail_once("apply")
    assert [(e["event"], e.get("not_logged_since")) for e in logs] == [
        ("apply failed, retrying", None),
        ("broker connect failed, retrying", None),
        ("apply failed, retrying", 39),
    ]
