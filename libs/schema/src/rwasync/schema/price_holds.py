"""Sanity holds on price ticks, as a pure rule (docs/api.md, "Sanity holds").

Off until a provider's policy sets them. With `max_jump` R, a tick is held when it moves by more
than R (a ratio: 0.5 = 50 %) from the **previous visible tick in `as_of` order** — not the price
that happened to arrive before it. Held ticks are never a reference for the ticks after them, so
one bad tick does not hold the good ones that follow; a released tick is.

A tick with no visible tick before it (an asset's first, or an old tick arriving after the
series) has nothing to be measured from, so it is measured from the ticks after it: it is held
when the next tick moves by more than R from it **and** the tick after that is within R of the
next one (the next two agree with each other, not with it: it is the outlier, not the series).
Otherwise (a lone tick, two ticks that disagree, a next tick not confirmed) it is visible and the
reference of the ones after it. So one stray tick dated before the series never holds the whole
series, while a level two agreeing ticks established is still defended. "The next ticks" are
those that can be shown: not rejected, not held for their currency.

A tick's state therefore depends on the ticks before it in `as_of` order and, up to the first
visible tick, on the two after it: `reevaluate` (rwasync.store.prices) re-runs the rule from the
earliest tick a batch touches, or from the series' start when that tick is within two of the
first visible one, which gives the same states whatever order the ticks arrived in. With
`currency_check`, a tick quoted in another currency than its asset's is held; that verdict is
taken once, when the tick is applied. A tick applied while its provider had no policy is
`settled`: a policy set later never judges it (it applies to ticks applied from then on), though
a visible one is still the reference of the ticks after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Context, Decimal
from enum import StrEnum
from itertools import islice
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
    # Applied while its provider had no policy: its state stands, whatever a policy set since
    # would say of it (a policy applies to ticks applied from then on).
    settled: bool = False

    @property
    def visible(self) -> bool:
        return self.state in VISIBLE_STATES

    def verdict(self) -> tuple[TickState, HoldKind | None, str | None]:
        return self.state, self.hold_kind, self.hold_reason


# Enough digits for any ratio of two amounts (each of at most 100 digits, 1e-99 to 1e99) as a
# percentage to a tenth: the default context's 28 made quantize fail on a move of 1e26, and the
# tick was dead-lettered instead of held (hostile trial).
_PERCENT_CONTEXT: Final = Context(prec=250, rounding=ROUND_DOWN)


def percent(ratio: Decimal) -> str:
    """A policy's ratio as a percentage, exactly: `Decimal("0.0001")` as `0.01 %`."""
    return f"{_PERCENT_CONTEXT.multiply(ratio, 100).normalize(_PERCENT_CONTEXT):f} %"


def moved_percent(move: Decimal, max_jump: Decimal) -> str:
    """A move beyond `max_jump` as a percentage cut to a tenth (never overstated: a fall of
    99.999999 % read "100 %"), or as `more than` the policy's when cutting shows it no larger (a
    trial read "moves 20 % …; the policy allows 20 %", and "allows 0 %" of a 0.01 % policy)."""
    exact = _PERCENT_CONTEXT.multiply(move, 100)
    shown = exact.quantize(Decimal("0.1"), context=_PERCENT_CONTEXT)
    if shown <= _PERCENT_CONTEXT.multiply(max_jump, 100):
        return f"more than {percent(max_jump)}"
    return f"{shown.normalize(_PERCENT_CONTEXT):f} %"


def currency_hold(currency: str, asset_currency: str | None, policy: PricePolicy) -> str | None:
    """The reason to hold a tick quoted in another currency than its asset's, or None. An asset
    with no known currency (no document yet, or no price or valuation in it) holds nothing."""
    if not policy.currency_check or asset_currency is None or currency == asset_currency:
        return None
    return f"currency {currency} differs from the asset's currency {asset_currency}"


def price_text(tick: SeriesTick) -> str:
    """A tick as reasons quote it, its amount written as reads do: `68.5 USD as of …`."""
    return f"{normalize_decimal(tick.amount)} {tick.currency} as of {timestamp_text(tick.as_of)}"


def jump_hold(tick: SeriesTick, reference: SeriesTick, max_jump: Decimal) -> str | None:
    """The reason to hold `tick` given the previous visible tick, or None."""
    ref = price_text(reference)
    if tick.currency != reference.currency:
        return f"currency {tick.currency} differs from the previous price ({ref}): cannot check"
    move = abs(tick.amount - reference.amount) / reference.amount
    if move <= max_jump:
        return None
    allowed = percent(max_jump)
    moved = moved_percent(move, max_jump)
    return f"moves {moved} from the previous price {ref}; the policy allows {allowed}"


def shown_ahead(tick: SeriesTick) -> bool:
    """Whether a tick counts among "the next ticks" an unreferenced tick is measured from: one
    that can be shown (released, or neither rejected nor held for its currency; a released
    tick keeps the kind of the hold it was released from)."""
    if tick.state is TickState.REJECTED:
        return False
    return tick.state is TickState.RELEASED or tick.hold_kind is not HoldKind.CURRENCY


def outlier_hold(tick: SeriesTick, later: Sequence[SeriesTick], max_jump: Decimal) -> str | None:
    """The reason to hold `tick`, which has no visible tick before it, given the ticks after it
    (ascending `as_of`), or None: held when the next tick that can be shown jumps from it and
    the one after that confirms the next (is within `max_jump` of it)."""
    following = list(islice((t for t in later if shown_ahead(t)), 2))
    if len(following) < 2:
        return None
    nearest, confirming = following
    if jump_hold(nearest, tick, max_jump) is None or jump_hold(confirming, nearest, max_jump):
        return None
    if tick.currency != nearest.currency:
        moved = f"is in another currency ({nearest.currency}) than it"
    else:
        move = abs(nearest.amount - tick.amount) / tick.amount
        moved = f"moves {moved_percent(move, max_jump)} from it"
    return (
        f"no earlier price, and the next price {price_text(nearest)} {moved}, confirmed by the"
        f" price after it ({price_text(confirming)}); the policy allows {percent(max_jump)}"
    )


def evaluate_series(
    reference: SeriesTick | None, ticks: Sequence[SeriesTick], policy: PricePolicy
) -> list[SeriesTick]:
    """The states of `ticks` (ascending `as_of`, all after `reference`, the last visible tick
    before them or None: then `ticks` must start at the series' first tick). Operators'
    decisions (released, rejected), currency holds and `settled` ticks (applied before any
    policy) stand, and so do jump holds under a policy without `max_jump` (turning the check off
    releases nothing: only a jump check that passes lifts one); every other tick is visible
    unless it jumps beyond the policy from the previous visible tick, or, with none before it,
    the next two ticks agree with each other but not with it (`outlier_hold`)."""
    evaluated: list[SeriesTick] = []
    for i, tick in enumerate(ticks):
        if (
            tick.settled
            or tick.state in (TickState.RELEASED, TickState.REJECTED)
            or tick.hold_kind is HoldKind.CURRENCY
            or (tick.hold_kind is HoldKind.JUMP and policy.max_jump is None)
        ):
            evaluated.append(tick)
        else:
            reason = None
            if policy.max_jump is not None and reference is not None:
                reason = jump_hold(tick, reference, policy.max_jump)
            elif policy.max_jump is not None:
                reason = outlier_hold(tick, ticks[i + 1 :], policy.max_jump)
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
