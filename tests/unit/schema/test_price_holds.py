"""The sanity-hold rule: jumps measured from the previous visible tick in as_of order, held ticks
never a reference, released ones always, currency holds standing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rwasync.schema.price_holds import (
    NO_POLICY,
    HoldKind,
    PricePolicy,
    SeriesTick,
    TickState,
    changed,
    currency_hold,
    evaluate_series,
    percent,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HALF = PricePolicy(max_jump=Decimal("0.5"))


def tick(minute: float, amount: str, currency: str = "USD", **kw: object) -> SeriesTick:
    return SeriesTick(
        as_of=T0 + timedelta(minutes=minute),
        amount=Decimal(amount),
        currency=currency,
        event_id=f"e{minute}",
        **kw,  # type: ignore[arg-type]
    )


def states(ticks: list[SeriesTick]) -> list[str]:
    return [str(t.state) for t in ticks]


def test_no_policy_holds_nothing() -> None:
    series = [tick(1, "100"), tick(2, "1000"), tick(3, "1")]
    assert states(evaluate_series(None, series, NO_POLICY)) == ["visible"] * 3


def test_a_spike_is_held_and_the_next_tick_is_compared_with_the_last_visible_one() -> None:
    evaluated = evaluate_series(None, [tick(1, "100"), tick(2, "300"), tick(3, "110")], HALF)
    assert states(evaluated) == ["visible", "held", "visible"]
    assert evaluated[1].hold_kind is HoldKind.JUMP
    assert evaluated[1].hold_reason is not None and "200 %" in evaluated[1].hold_reason


def test_the_reason_writes_the_reference_price_as_reads_do() -> None:
    # Stored prices come back with the column's scale (68.50); reads write 68.5.
    evaluated = evaluate_series(None, [tick(1, "68.50"), tick(2, "200")], HALF)
    reason = evaluated[1].hold_reason
    assert reason is not None and "previous price 68.5 USD as of" in reason


def test_the_bound_is_inclusive_and_drops_count_like_rises() -> None:
    evaluated = evaluate_series(
        None, [tick(1, "100"), tick(2, "150"), tick(3, "74"), tick(4, "36.9")], HALF
    )
    # 150 is +50 % (allowed); 74 is -50.7 % from 150 (held); 36.9 is compared with 150 again,
    # not with the held 74: -75.4 %.
    assert states(evaluated) == ["visible", "visible", "held", "held"]


def test_the_reference_comes_before_the_series() -> None:
    reference = tick(0, "100")
    assert states(evaluate_series(reference, [tick(1, "160")], HALF)) == ["held"]
    assert states(evaluate_series(None, [tick(1, "160")], HALF)) == ["visible"]


def test_a_released_tick_is_a_reference_and_decisions_stand() -> None:
    series = [
        tick(1, "100"),
        tick(2, "300", state=TickState.RELEASED),
        tick(3, "310"),
        tick(4, "10", state=TickState.REJECTED),
        tick(5, "100"),
    ]
    assert states(evaluate_series(None, series, HALF)) == [
        "visible",
        "released",
        "visible",
        "rejected",
        "held",
    ]


def test_currency_holds_stand_and_another_currency_cannot_be_compared() -> None:
    series = [
        tick(1, "100"),
        tick(2, "100", "EUR", state=TickState.HELD, hold_kind=HoldKind.CURRENCY, hold_reason="x"),
        tick(3, "101", "EUR"),
    ]
    evaluated = evaluate_series(None, series, HALF)
    assert states(evaluated) == ["visible", "held", "held"]
    assert evaluated[1].hold_reason == "x"
    assert evaluated[2].hold_reason is not None and "cannot check" in evaluated[2].hold_reason


def test_a_held_tick_is_let_through_when_its_reference_changes() -> None:
    before = [tick(2, "300", state=TickState.HELD, hold_kind=HoldKind.JUMP, hold_reason="r")]
    after = evaluate_series(tick(1, "250"), before, HALF)
    assert changed(before, after) == [after[0]] and after[0].state is TickState.VISIBLE


def test_turning_the_jump_check_off_lifts_no_jump_hold() -> None:
    """Only a jump check that passes lifts a jump hold: with the check off (no policy, or only
    the currency check) a held tick stays held while the ticks around it are re-run."""
    held = tick(2, "300", state=TickState.HELD, hold_kind=HoldKind.JUMP, hold_reason="r")
    spike = tick(3, "9000", state=TickState.HELD, hold_kind=HoldKind.JUMP, hold_reason="s")
    for policy in (NO_POLICY, PricePolicy(currency_check=True)):
        after = evaluate_series(tick(1, "100"), [held, tick(2.5, "120"), spike], policy)
        assert states(after) == ["held", "visible", "held"]
        assert changed([held, tick(2.5, "120"), spike], after) == []


def test_currency_check() -> None:
    policy = PricePolicy(currency_check=True)
    assert (
        currency_hold("EUR", "USD", policy) == "currency EUR differs from the asset's currency USD"
    )
    assert currency_hold("USD", "USD", policy) is None
    assert currency_hold("EUR", None, policy) is None  # the asset has no currency to check
    assert currency_hold("EUR", "USD", NO_POLICY) is None


def test_percent() -> None:
    assert percent(Decimal("0.625")) == "62.5 %"
    assert percent(Decimal("2")) == "200 %"
