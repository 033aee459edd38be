"""The byte budget that bounds what a process holds at once: first come first served, a holder
larger than the whole budget goes alone, and a waiter that gives up leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from rwasync.platform.budget import BudgetTimeout, ByteBudget

pytestmark = pytest.mark.unit


async def test_holders_within_the_budget_go_at_once_and_the_rest_wait_in_order() -> None:
    budget = ByteBudget(100)
    assert await budget.take(60) == 60
    order: list[str] = []

    async def holder(name: str, size: int) -> None:
        async with budget.holding(size):
            order.append(name)
            await asyncio.sleep(0)

    large = asyncio.create_task(holder("large", 80))
    await asyncio.sleep(0)
    small = asyncio.create_task(holder("small", 10))  # would fit, but comes after `large`
    await asyncio.sleep(0.01)
    assert order == [] and budget.held == 60
    budget.give_back(60)
    await asyncio.gather(large, small)
    assert order == ["large", "small"] and budget.held == 0


async def test_a_holder_larger_than_the_budget_goes_alone() -> None:
    budget = ByteBudget(100)
    first = await budget.take(1)
    huge = asyncio.create_task(budget.take(10_000))
    await asyncio.sleep(0.01)
    assert not huge.done()
    budget.give_back(first)
    assert await huge == 100 and budget.held == 100
    budget.give_back(100)
    assert budget.held == 0


async def test_a_waiter_that_times_out_leaves_the_budget_as_it_was() -> None:
    budget = ByteBudget(100)
    held = await budget.take(100)
    with pytest.raises(BudgetTimeout):
        await budget.take(50, timeout=0.05)
    behind = asyncio.create_task(budget.take(50))
    await asyncio.sleep(0)
    budget.give_back(held)
    assert await behind == 50 and budget.held == 50


async def test_a_cancelled_waiter_lets_the_next_one_in() -> None:
    budget = ByteBudget(100)
    await budget.take(40)
    blocked = asyncio.create_task(budget.take(90))  # first in line, does not fit
    await asyncio.sleep(0)
    fits = asyncio.create_task(budget.take(30))  # fits, but waits behind it
    await asyncio.sleep(0)
    assert not fits.done()
    blocked.cancel()
    assert await fits == 30 and budget.held == 70


async def test_a_waiter_granted_as_it_gives_up_hands_its_bytes_on() -> None:
    budget = ByteBudget(100)
    held = await budget.take(100)
    waiting = asyncio.create_task(budget.take(100))
    await asyncio.sleep(0)
    budget.give_back(held)  # grants `waiting`
    waiting.cancel()  # before it ran again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.held == 0
