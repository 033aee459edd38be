"""Group commit: concurrent submissions share flushes, whole, within the size and concurrency
bounds, and each submitter learns its own flush's outcome."""

from __future__ import annotations

import asyncio
import gc

import pytest

from rwasync.platform.grouping import GroupCommit

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.flushes: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self._fail_on = fail_on

    async def flush(self, items: list[int]) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.01)
            self.flushes.append(items)
            if self._fail_on is not None and self._fail_on in items:
                raise RuntimeError("flush failed")
        finally:
            self.running -= 1


async def test_submissions_arriving_during_a_flush_share_the_next_one() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush)
    first = asyncio.create_task(group.submit([0]))
    await asyncio.sleep(0.001)  # the first flush is under way
    await asyncio.gather(first, *(group.submit([n]) for n in range(1, 50)))
    assert recorder.flushes == [[0], list(range(1, 50))]


async def test_flushes_respect_max_items_without_splitting_a_submission() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=10, max_concurrent=3)
    submissions = [list(range(n * 4, n * 4 + 4)) for n in range(20)] + [list(range(100, 125))]
    await asyncio.gather(*(group.submit(items) for items in submissions))
    assert recorder.most_running <= 3
    for flush in recorder.flushes:
        assert len(flush) <= 10 or flush == list(range(100, 125))
    assert sorted(n for flush in recorder.flushes for n in flush) == sorted(
        n for items in submissions for n in items
    )


async def test_a_failed_flush_reaches_its_submitters_only() -> None:
    recorder = Recorder(fail_on=7)
    group = GroupCommit(recorder.flush, max_items=1)
    outcomes = await asyncio.gather(*(group.submit([n]) for n in range(10)), return_exceptions=True)
    assert [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)] == [7]


async def test_a_group_failing_on_one_poison_submission_is_flushed_again_one_by_one() -> None:
    """With `alone_after`, a failure that may be one submission's own does not fail the
    others: each is flushed again alone, and only the poison one gets the error."""
    recorder = Recorder(fail_on=7)
    group = GroupCommit(recorder.flush, alone_after=lambda exc: isinstance(exc, RuntimeError))
    first = asyncio.create_task(group.submit([0]))
    await asyncio.sleep(0.001)  # the rest arrive during the first flush: they share the next
    outcomes = await asyncio.gather(
        first, *(group.submit([n, n + 100]) for n in range(1, 10)), return_exceptions=True
    )
    assert [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)] == [7]
    grouped = [n for pair in ([n, n + 100] for n in range(1, 10)) for n in pair]
    assert recorder.flushes == [[0], grouped, *([n, n + 100] for n in range(1, 10))]


async def test_a_failure_alone_after_rejects_reaches_every_submitter_of_the_group() -> None:
    """A failure `alone_after` turns down (a transient one: every submitter retries) is not
    flushed again one by one."""
    recorder = Recorder(fail_on=7)
    group = GroupCommit(recorder.flush, alone_after=lambda exc: False)
    first = asyncio.create_task(group.submit([0]))
    await asyncio.sleep(0.001)
    outcomes = await asyncio.gather(
        first, *(group.submit([n]) for n in range(1, 10)), return_exceptions=True
    )
    assert [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)] == list(
        range(1, 10)
    )
    assert len(recorder.flushes) == 2


async def test_cancelled_while_flushing_alone_the_submitters_still_waiting_are_cancelled() -> None:
    """Shutting down while a failed group is flushed again one by one: no submitter is left
    waiting for a flush that will never come."""
    recorder = Recorder(fail_on=7)
    group = GroupCommit(recorder.flush, alone_after=lambda exc: True)
    first = asyncio.create_task(group.submit([0]))
    await asyncio.sleep(0.001)
    rest = [asyncio.create_task(group.submit([n])) for n in range(1, 10)]
    for _ in range(2000):  # until [0], the failed group and the first alone flush are done
        if len(recorder.flushes) >= 3:
            break
        await asyncio.sleep(0.001)
    for flusher in list(group._flushers):
        flusher.cancel()
    outcomes = await asyncio.wait_for(
        asyncio.gather(first, *rest, return_exceptions=True), timeout=2
    )
    assert outcomes[0] is None
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[2:])


async def test_a_lingering_group_waits_for_company_then_flushes_what_came() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100, linger=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = asyncio.create_task(group.submit([0]))
    await asyncio.sleep(0.01)
    await asyncio.gather(first, *(group.submit([n]) for n in range(1, 5)))
    # One flush of all five, which waited out the linger for the 100 it would take.
    assert recorder.flushes == [[0, 1, 2, 3, 4]]
    assert loop.time() - began >= 0.05


async def test_a_lingering_group_goes_at_once_when_it_fills() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100, linger=10.0, fill=20)
    async with asyncio.timeout(2):  # far less than the linger
        await asyncio.gather(*(group.submit([n, n + 1000]) for n in range(10)))
    assert sorted(n for flush in recorder.flushes for n in flush) == sorted(
        [n for n in range(10)] + [n + 1000 for n in range(10)]
    )


async def test_lingering_flushers_side_by_side_flush_every_item_once() -> None:
    """Several flushers linger at once: whichever wakes last finds the queue emptied by another
    and ends; nothing is flushed twice or left behind, whatever the arrival pattern."""
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=8, max_concurrent=3, linger=0.005)
    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    submitted: list[asyncio.Task[None]] = []
    for wave in range(30):
        for n in range(wave % 7):
            submitted.append(asyncio.create_task(group.submit([wave * 100 + n])))
        await asyncio.sleep(0.001 * (wave % 4))
    await asyncio.gather(*submitted)
    await asyncio.sleep(0.02)  # every flusher has ended
    gc.collect()  # a failed task that nobody awaited reports itself when collected
    assert unhandled == []
    flushed = [n for flush in recorder.flushes for n in flush]
    assert sorted(flushed) == sorted(w * 100 + n for w in range(30) for n in range(w % 7))
    assert all(len(flush) <= 8 for flush in recorder.flushes)
    assert recorder.most_running <= 3


def test_linger_needs_a_size_to_wait_for() -> None:
    with pytest.raises(ValueError, match="fill or max_items"):
        GroupCommit(Recorder().flush, linger=0.01)
    with pytest.raises(ValueError, match="negative"):
        GroupCommit(Recorder().flush, max_items=5, linger=-1)


async def test_a_lingering_group_stops_waiting_once_its_submitters_can_send_no_more() -> None:
    """A consumer with a prefetch of 4 single-event messages: once 4 are open, no fifth comes
    until some are acknowledged, so the group goes at once instead of idling out the linger."""
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=250, linger=10.0, fill_submissions=4)
    async with asyncio.timeout(2):  # far less than the linger
        await asyncio.gather(*(group.submit([n]) for n in range(4)))
    assert sorted(n for flush in recorder.flushes for n in flush) == [0, 1, 2, 3]
    # Fewer open than that: it waits for company again.
    loop = asyncio.get_running_loop()
    began = loop.time()
    group = GroupCommit(recorder.flush, max_items=250, linger=0.05, fill_submissions=4)
    await asyncio.gather(*(group.submit([n]) for n in range(3)))
    assert loop.time() - began >= 0.05
