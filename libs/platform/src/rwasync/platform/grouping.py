"""Group commit: the items of concurrent callers travel in one round trip (one insert, one broker
message) instead of one each. Items submitted while a flush is under way wait for the next one,
so the group grows with the load and a lone caller waits for nobody — unless the group may
linger for company, which trades a little latency for fewer, larger flushes under a light,
steady load."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Runs `flush` over the items of whole submissions taken together: at most `max_items` per
    flush (a larger submission goes alone, never split) and at most `max_concurrent` flushes
    under way at once. Each submitter gets what its flush raised, unless `alone_after(exc)`
    says the failure may be one submission's own (a poison item): then each submission of the
    group is flushed again alone, and gets its own outcome.

    `linger` (seconds, 0 for none): a flusher about to take fewer than `fill` items (default
    `max_items`) waits up to this long for more to arrive first — unless `fill_submissions`
    submissions are open (waiting or being flushed): a consumer holding its whole prefetch gets
    no more messages until it acknowledges some, so waiting would only idle."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[None]],
        *,
        max_items: int | None = None,
        max_concurrent: int = 1,
        alone_after: Callable[[Exception], bool] | None = None,
        linger: float = 0.0,
        fill: int | None = None,
        fill_submissions: int | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if linger < 0:
            raise ValueError("linger must not be negative")
        fill = fill or max_items
        if linger and fill is None:
            raise ValueError("a group that lingers needs fill or max_items")
        self._flush = flush
        self._max_items = max_items
        self._max_concurrent = max_concurrent
        self._alone_after = alone_after
        self._waiting: deque[tuple[Sequence[T], asyncio.Future[None]]] = deque()
        self._flushers: set[asyncio.Task[None]] = set()
        self._linger = linger
        self._fill = fill or 0
        self._queued = 0  # items waiting
        self._fill_submissions = fill_submissions
        self._open = 0  # submissions waiting or being flushed
        self._filled = asyncio.Event()

    @property
    def max_concurrent(self) -> int:
        return self._max_concurrent

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        """Flushes under way beyond a lowered limit end with their group; a raised one is used
        from the next submission."""
        if value < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._max_concurrent = value

    async def submit(self, items: Sequence[T]) -> None:
        """Return once a flush carrying these items succeeded; raise what it raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, done))
        self._queued += len(items)
        self._open += 1
        if self._is_full():
            self._filled.set()
        if len(self._flushers) < self._max_concurrent:
            flusher = asyncio.create_task(self._flush_while_waiting())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        try:
            await done
        finally:
            self._open -= 1

    def _is_full(self) -> bool:
        return self._queued >= self._fill or (
            self._fill_submissions is not None and self._open >= self._fill_submissions
        )

    def _take_group(self) -> list[tuple[Sequence[T], asyncio.Future[None]]]:
        group = [self._waiting.popleft()]
        size = len(group[0][0])
        while self._waiting and (
            self._max_items is None or size + len(self._waiting[0][0]) <= self._max_items
        ):
            items, done = self._waiting.popleft()
            size += len(items)
            group.append((items, done))
        self._queued -= size
        return group

    async def _gathered(self) -> None:
        """Wait up to `linger` seconds for `fill` items to be waiting (or `fill_submissions`
        submissions open)."""
        if self._is_full():
            return
        self._filled.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._linger):
                await self._filled.wait()

    async def _flush_while_waiting(self) -> None:
        try:
            while self._waiting:
                if self._linger:
                    await self._gathered()
                    if not self._waiting:  # another flusher took them meanwhile
                        break
                await self._flush_group(self._take_group())
        finally:
            # Leave the set as soon as the queue is seen empty, not in the done callback that runs
            # later: a submitter woken by the last flush may submit again before that callback,
            # find the set full, and wait for a flusher that has already ended.
            self._flushers.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _flush_group(self, group: list[tuple[Sequence[T], asyncio.Future[None]]]) -> None:
        try:
            await self._flush([item for items, _ in group for item in items])
        except Exception as exc:  # handed to every submitter, which logs it in context
            if len(group) > 1 and self._alone_after is not None and self._alone_after(exc):
                for index, submission in enumerate(group):
                    try:
                        await self._flush_group([submission])
                    except BaseException:  # cancelled: so are the submitters still waiting
                        for _, done in group[index + 1 :]:
                            done.cancel()
                        raise
                return
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
        except BaseException:  # cancelled (shutting down): so are its submitters
            for _, done in group:
                done.cancel()
            raise
        else:
            for _, done in group:
                if not done.done():
                    done.set_result(None)
