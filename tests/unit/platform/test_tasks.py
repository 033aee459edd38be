"""Stopping background tasks whose code swallows a cancellation, as aio-pika does mid-RPC."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rwasync.platform import metrics
from rwasync.platform.tasks import cancel_and_wait

pytestmark = pytest.mark.unit


async def _rpc_that_swallows_cancellation() -> None:
    """What aiormq does to a cancellation that lands on a channel open: an ordinary error."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise RuntimeError("channel closed") from None


async def _retrying_loop() -> None:
    while True:
        with contextlib.suppress(Exception):
            await _rpc_that_swallows_cancellation()
        await asyncio.sleep(10)


async def test_a_loop_that_swallowed_the_cancellation_is_cancelled_again() -> None:
    task = asyncio.create_task(_retrying_loop())
    await asyncio.sleep(0)
    # A plain cancel-and-await would wait here forever (the loop goes on to its next sleep).
    assert await cancel_and_wait(task, timeout=5)
    assert task.cancelled()


async def test_a_task_that_never_stops_is_given_up_on_after_the_bound() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await cancel_and_wait(task, timeout=0.5)
    assert loop.time() - started < 2
    assert not task.done()
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done()


async def test_a_finished_or_failed_task_is_simply_done() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task)
    assert await cancel_and_wait(None)


async def test_the_queue_depth_sampler_honours_a_cancellation_turned_into_an_error() -> None:
    calls = 0

    async def depths(queues: object) -> dict[str, tuple[int, int]]:
        nonlocal calls
        calls += 1
        await _rpc_that_swallows_cancellation()
        return {}

    task = asyncio.create_task(metrics.sample_queue_depths(depths, ["q"], every=10))
    await asyncio.sleep(0.01)
    task.cancel()
    # One cancellation is enough: the sampler sees it was cancelled and stops.
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()
    assert calls == 1


async def test_a_failed_queue_depth_sample_drops_the_gauges_rather_than_keep_stale_ones() -> None:
    """Through a broker outage /metrics showed the last sample's consumers and depth as current
    (an operator's trial); now the series are gone until a sample succeeds again."""
    answers: list[dict[str, tuple[int, int]] | Exception] = [
        {"q-stale": (7, 2)},
        ConnectionError("broker away"),
        {"q-stale": (0, 1)},
    ]
    sampled = asyncio.Event()

    async def depths(queues: object) -> dict[str, tuple[int, int]]:
        answer = answers.pop(0)
        sampled.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def value(gauge: Any) -> float | None:
        return REGISTRY.get_sample_value(gauge, {"queue": "q-stale"})

    task = asyncio.create_task(metrics.sample_queue_depths(depths, ["q-stale"], every=0.01))
    try:
        seen = []
        for _ in range(3):
            await sampled.wait()
            sampled.clear()
            await asyncio.sleep(0)
            seen.append((value("rwasync_queue_messages"), value("rwasync_queue_consumers")))
    finally:
        await cancel_and_wait(task)
    assert seen == [(7.0, 2.0), (None, None), (0.0, 1.0)]
