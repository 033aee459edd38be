"""Sanity holds on price ticks, as a pure rule (docs/api.md, "Sanity holds").

Off until a provider's policy sets them. With `max_jump` R, a tick is held when it moves by more
than R (a ratio: 0.5 = 50 %) from the **previous visible tick in `as_of` order** — not the price
that happened to arrive before it. Held ticks are never a reference for the ticks after them, so
one bad tick does not hold the good ones that follow; a released tick is. Because the state of a
tick depends only on the ticks before it in `as_of` order, re-running the rule from the earliest
tick a batch touches, over the stored ticks after it, gives the same states whatever order the
ticks arrived in. With `currency_check`, a tick quoted in another currency than its asset's is
held; that verdict is taken once, when the tick is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.timestamps import timestamp_text


class TickState(StrEnum):
    VISIBLE = "visible"
    HELD = "held"
    RELEASED = "released"
    REJECTED = "rejected"


class HoldKind(StrEnum):
    JUMP = "jump"
    CURRENCY = "currency"


VISIBLE_STATES: Final = frozenset({TickState.VISIBLE, TickState.RELEASED})


@dataclass(frozen=True, slots=True)
class PricePolicy:
    """A provider's sanity checks; the default checks nothing."""

    max_jump: Decimal | None = None
    currency_check: bool = False

    @property
    def active(self) -> bool:
        return self.max_jump is not None or self.currency_check


NO_POLICY: Final = PricePolicy()


@dataclass(frozen=True, slots=True)
class SeriesTick:
    """One history entry of an asset as the rule sees it (one per `as_of`)."""

    as_of: datetime
    amount: Decimal
    currency: str
    event_id: str
    state: TickState = TickState.VISIBLE
    hold_kind: HoldKind | None = None
    hold_reason: str | None = None

    @property
    def visible(self) -> bool:
        return self.state in VISIBLE_STATES

    def verdict(self) -> tuple[TickState, HoldKind | None, str | None]:
        return self.state, self.hold_kind, self.hold_reason


def percent(ratio: Decimal) -> str:
    """`Decimal("0.625")` as `62.5 %`."""
    return f"{(ratio * 100).quantize(Decimal('0.1')).normalize():f} %"


def currency_hold(currency: str, asset_currency: str | None, policy: PricePolicy) -> str | None:
    """The reason to hold a tick quoted in another currency than its asset's, or None. An asset
    with no known currency (no document yet, or no price or valuation in it) holds nothing."""
    if not policy.currency_check or asset_currency is None or currency == asset_currency:
        return None
    return f"currency {currency} differs from the asset's currency {asset_currency}"


def jump_hold(tick: SeriesTick, reference: SeriesTick, max_jump: Decimal) -> str | None:
    """The reason to hold `tick` given the previous visible tick, or None."""
    amount, as_of = normalize_decimal(reference.amount), timestamp_text(reference.as_of)
    ref = f"{amount} {reference.currency} as of {as_of}"
    if tick.currency != reference.currency:
        return f"currency {tick.currency} differs from the previous price ({ref}): cannot check"
    move = abs(tick.amount - reference.amount) / reference.amount
    if move <= max_jump:
        return None
    allowed = percent(max_jump)
    return f"moves {percent(move)} from the previous price {ref}; the policy allows {allowed}"


def evaluate_series(
    reference: SeriesTick | None, ticks: Sequence[SeriesTick], policy: PricePolicy
) -> list[SeriesTick]:
    """The states of `ticks` (ascending `as_of`, all after `reference`, the last visible tick
    before them or None). Operators' decisions (released, rejected) and currency holds stand, and
    so do jump holds under a policy without `max_jump` (turning the check off releases nothing:
    only a jump check that passes lifts one); every other tick is visible unless it jumps beyond
    the policy from the previous visible tick."""
    evaluated: list[SeriesTick] = []
    for tick in ticks:
        if (
            tick.state in (TickState.RELEASED, TickState.REJECTED)
            or tick.hold_kind is HoldKind.CURRENCY
            or (tick.hold_kind is HoldKind.JUMP and policy.max_jump is None)
        ):
            evaluated.append(tick)
        else:
            reason = None
            if policy.max_jump is not None and reference is not None:
                reason = jump_hold(tick, reference, policy.max_jump)
            if reason is None:
                tick = replace(tick, state=TickState.VISIBLE, hold_kind=None, hold_reason=None)
            else:
                tick = replace(
                    tick, state=TickState.HELD, hold_kind=HoldKind.JUMP, hold_reason=reason
                )
            evaluated.append(tick)
        if evaluated[-1].visible:
            reference = evaluated[-1]
    return evaluated


def changed(before: Iterable[SeriesTick], after: Iterable[SeriesTick]) -> list[SeriesTick]:
    """The ticks of `after` whose state differs from the same position in `before`."""
    return [new for old, new in zip(before, after, strict=True) if old.verdict() != new.verdict()]
