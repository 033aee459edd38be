"""A budget of bytes a process holds at once (request bodies being handled, messages being
decoded and applied), so that its memory stays under its container's limit whatever arrives
together: three 16 MiB batch pushes at once took ingest-api past 512 MiB, and a backlog of
500-event messages took the reconciler there (a deployment trial).

A holder asks for the bytes it is about to hold and gives them back when done; one that does not
fit waits, first come first served, so a large request is not overtaken for ever by small ones.
A request larger than the whole budget waits until nothing else is held, then goes alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class BudgetTimeout(Exception):
    """The bytes did not become free within the wait allowed."""


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a byte budget needs a capacity of at least 1")
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def held(self) -> int:
        return self.capacity - self._free

    async def take(self, size: int, timeout: float | None = None) -> int:
        """Hold `size` bytes (at most the whole capacity); the amount held, to `give_back`.
        Raises BudgetTimeout if they are not free within `timeout` seconds (None: waits)."""
        size = max(0, min(size, self.capacity))
        if not self._waiters and size <= self._free:
            self._free -= size
            return size
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted while it gave up: the bytes were counted as held, hand them on.
                self.give_back(size)
            else:
                with contextlib.suppress(ValueError):  # unless `_wake` already dropped it
                    self._waiters.remove(entry)
                self._wake()  # the next in line may fit now that this one left
            if isinstance(exc, TimeoutError):
                raise BudgetTimeout(f"{size} bytes not free within {timeout:g} s") from None
            raise
        return size

    def give_back(self, size: int) -> None:
        self._free = min(self.capacity, self._free + size)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._free:
            size, waiter = self._waiters.popleft()
            if waiter.done():  # cancelled: its `take` removes nothing any more
                continue
            self._free -= size
            waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def holding(self, size: int, timeout: float | None = None) -> AsyncIterator[int]:
        taken = await self.take(size, timeout)
        try:
            yield taken
        finally:
            self.give_back(taken)
