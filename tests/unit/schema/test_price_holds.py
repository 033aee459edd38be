"""The sanity-hold rule: jumps measured from the previous visible tick in as_of order, held ticks
never a reference, released ones always, currency holds standing; a tick with no visible tick
before it held when the next two ticks agree with each other but not with it."""

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
    jump_hold,
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
    # The series opens with two agreeing ticks: a lone first tick whose next two ticks (here the
    # released 300 and 310) agree with each other but not with it would be held as an outlier.
    series = [
        tick(0, "101"),
        tick(1, "100"),
        tick(2, "300", state=TickState.RELEASED),
        tick(3, "310"),
        tick(4, "10", state=TickState.REJECTED),
        tick(5, "100"),
    ]
    assert states(evaluate_series(None, series, HALF)) == [
        "visible",
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


def test_an_old_outlier_before_a_consistent_series_is_held_not_the_series() -> None:
    """A tick with no visible tick before it is measured from the next two: they agree with each
    other but not with it, so it is the outlier."""
    series = [tick(0, "1000"), tick(1, "100"), tick(2, "101"), tick(3, "102")]
    evaluated = evaluate_series(None, series, HALF)
    assert states(evaluated) == ["held", "visible", "visible", "visible"]
    assert evaluated[0].hold_kind is HoldKind.JUMP
    reason = evaluated[0].hold_reason
    assert reason is not None and reason.startswith("no earlier price, and the next price 100 USD")
    assert "moves 90 % from it, confirmed by the price after it (101 USD as of" in reason
    assert reason.endswith("the policy allows 50 %")
    # Held before: the same series re-run lifts nothing and holds nothing else.
    assert changed(evaluated, evaluate_series(None, evaluated, HALF)) == []


def test_the_outcome_depends_on_the_set_of_ticks_not_on_their_arrival() -> None:
    """The series as stored (ascending as_of) is all the rule reads: an outlier arriving last
    and one arriving first leave the same states once the series is re-run from its start."""
    outlier = tick(0, "1000")
    rest = [tick(1, "100"), tick(2, "101"), tick(3, "102")]
    before = evaluate_series(None, rest, HALF)
    assert states(before) == ["visible"] * 3
    late = evaluate_series(None, [outlier, *before], HALF)
    first = evaluate_series(None, [*evaluate_series(None, [outlier], HALF), *rest], HALF)
    assert [t.verdict() for t in late] == [t.verdict() for t in first]
    assert states(late) == ["held", "visible", "visible", "visible"]


def test_a_lone_first_tick_is_visible_and_one_tick_against_one_keeps_the_first() -> None:
    assert states(evaluate_series(None, [tick(1, "1000")], HALF)) == ["visible"]
    assert states(evaluate_series(None, [tick(1, "1000"), tick(2, "100")], HALF)) == [
        "visible",
        "held",
    ]
    # The next tick is not confirmed (the one after it jumps from it too): the first stands.
    assert states(
        evaluate_series(None, [tick(1, "1000"), tick(2, "100"), tick(3, "300")], HALF)
    ) == [
        "visible",
        "held",
        "held",
    ]


def test_two_agreeing_first_ticks_are_a_level_the_series_after_them_jumps_from() -> None:
    series = [tick(0, "1000"), tick(1, "1010"), tick(2, "100"), tick(3, "101")]
    assert states(evaluate_series(None, series, HALF)) == ["visible", "visible", "held", "held"]


def test_a_reference_before_the_ticks_leaves_no_tick_unreferenced() -> None:
    series = [tick(1, "1000"), tick(2, "100"), tick(3, "101")]
    assert states(evaluate_series(tick(0, "1000"), series, HALF)) == ["visible", "held", "held"]


def test_rejected_and_currency_held_ticks_neither_outvote_nor_confirm() -> None:
    currency_held = {"state": TickState.HELD, "hold_kind": HoldKind.CURRENCY, "hold_reason": "x"}
    # Only one tick that can be shown follows the first: it stands.
    series = [tick(0, "1000"), tick(1, "100", state=TickState.REJECTED), tick(2, "101")]
    assert states(evaluate_series(None, series, HALF)) == ["visible", "rejected", "held"]
    series = [tick(0, "1000"), tick(1, "100", **currency_held), tick(2, "101")]
    assert states(evaluate_series(None, series, HALF)) == ["visible", "held", "held"]
    # They are skipped: the next two that can be shown decide.
    series = [
        tick(0, "1000"),
        tick(1, "100"),
        tick(1.5, "5", state=TickState.REJECTED),
        tick(2, "101"),
    ]
    assert states(evaluate_series(None, series, HALF)) == ["held", "visible", "rejected", "visible"]
    # A released tick can be shown: it counts, and a currency hold it was released from too.
    released = tick(2, "101", state=TickState.RELEASED, hold_kind=HoldKind.CURRENCY)
    series = [tick(0, "1000"), tick(1, "100"), released]
    assert states(evaluate_series(None, series, HALF)) == ["held", "visible", "released"]


def test_an_outlier_in_another_currency_than_the_series_is_held() -> None:
    series = [tick(0, "100", "EUR"), tick(1, "100"), tick(2, "101")]
    evaluated = evaluate_series(None, series, HALF)
    assert states(evaluated) == ["held", "visible", "visible"]
    reason = evaluated[0].hold_reason
    assert reason is not None and "is in another currency (USD) than it" in reason


def test_without_max_jump_no_first_tick_is_held() -> None:
    series = [tick(0, "1000"), tick(1, "100"), tick(2, "101")]
    for policy in (NO_POLICY, PricePolicy(currency_check=True)):
        assert states(evaluate_series(None, series, policy)) == ["visible"] * 3


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


def test_ticks_applied_before_any_policy_stand_and_are_still_references() -> None:
    """A policy applies to ticks applied from then on: a late tick under it re-checks the ticks
    after it, but not those applied while there was none (it held months of shown prices:
    investor trial). A settled visible tick is the reference of the ticks after it."""
    late = tick(11, "101")
    series = [late, tick(12, "300", settled=True), tick(13, "1000"), tick(14, "320")]
    evaluated = evaluate_series(tick(10, "100", settled=True), series, HALF)
    assert states(evaluated) == ["visible", "visible", "held", "visible"]
    assert evaluated[2].hold_reason is not None and "previous price 300 USD" in (
        evaluated[2].hold_reason
    )
    # A settled tick is never held as an outlier either, and still outvotes a first tick.
    opening = [tick(1, "5"), tick(2, "100", settled=True), tick(3, "101")]
    first = evaluate_series(None, opening, HALF)
    assert states(first) == ["held", "visible", "visible"]


def test_a_held_move_never_reads_as_within_the_policy() -> None:
    """Reasons round a move to a tenth of a percent; a move that rounds to the policy's reads as
    more than it, and the policy's own figure is exact (a trial read "moves 20 % …; the policy
    allows 20 %", and "allows 0 %" of a 0.01 % policy)."""
    previous = tick(1, "96")
    reason = jump_hold(tick(2, "115.2000000000000000000001"), previous, Decimal("0.2"))
    assert reason is not None and reason.startswith("moves more than 20 % from the previous")
    assert reason.endswith("the policy allows 20 %")
    reason = jump_hold(tick(2, "96.1"), previous, Decimal("0.0001"))
    assert reason is not None and reason.startswith("moves 0.1 % from the previous price 96 USD")
    assert reason.endswith("the policy allows 0.01 %")
    reason = jump_hold(tick(2, "120"), previous, Decimal("0.2"))
    assert reason is not None and reason.startswith("moves 25 % from")


def test_any_move_between_two_amounts_gets_a_reason() -> None:
    """A move of 1e26 overflowed the default decimal context's 28 digits: the tick was
    dead-lettered instead of held (hostile trial). A fall is never shown as 100 %."""
    huge = jump_hold(tick(2, "1" + "0" * 27), tick(1, "1"), Decimal("0.0001"))
    assert huge is not None and huge.startswith("moves 99999999999999999999999999900 % from")
    widest = jump_hold(tick(2, "9" * 99), tick(1, "1e-99"), Decimal("0.0001"))
    assert widest is not None and widest.startswith("moves 1000")
    fall = jump_hold(tick(2, "0.000001"), tick(1, "99.99"), Decimal("0.0001"))
    assert fall is not None and fall.startswith("moves 99.9 % from")
