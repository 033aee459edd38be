"""Sanity holds against real Postgres: the outcome (latest prices, history with hold states,
receipts' holds) is the same for every delivery order, batch split and concurrency; a held tick
is invisible until released; the currency check reads the asset's currency from `asset_state`."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.platform.db import Database
from rwasync.pricing.apply import PriceApplier
from rwasync.reconciler.apply import AssetApplier
from rwasync.schema.events import PriceUpdated
from tests.support.events import at, price, upserted

pytestmark = pytest.mark.integration

AMOUNTS = ["100", "104", "130", "180", "290", "55", "60"]


async def state(db: Database) -> dict[str, Any]:
    latest = await db.fetch(
        "SELECT provider_id, asset_id, amount, currency, as_of, accepted_at, event_id"
        " FROM asset_prices ORDER BY 1, 2"
    )
    history = await db.fetch(
        "SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id, state,"
        " hold_kind, hold_reason FROM price_history ORDER BY 1, 2, 3"
    )
    held = await db.fetch(
        "SELECT event_id FROM event_receipts WHERE status = 'held' ORDER BY event_id"
    )
    return {
        "latest": [tuple(r) for r in latest],
        "history": [tuple(r) for r in history],
        "held": [r["event_id"] for r in held],
    }


async def reset(db: Database) -> None:
    await db.execute("TRUNCATE asset_prices, price_history, event_receipts, price_changes")


@pytest.fixture
async def policed(db: Database, provider_id: str) -> str:
    """A second provider with a 50 % jump policy (the first has none)."""
    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_strict', 'Strict')")
    await db.execute(
        "INSERT INTO price_policies (provider_id, max_jump) VALUES ('prv_strict', 0.5)"
    )
    return "prv_strict"


tick_sets = st.lists(
    st.tuples(
        st.sampled_from(["prv_test", "prv_strict"]),
        st.sampled_from(["a1", "a2"]),
        st.integers(0, 12),  # as_of minute: equal as_of happens (corrections, duplicates)
        st.sampled_from(AMOUNTS),
    ),
    min_size=1,
    max_size=24,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=tick_sets, data=st.data())
@pytest.mark.parametrize("shares", [1, 3])
async def test_any_delivery_order_gives_the_same_prices_history_and_holds(
    db: Database,
    policed: str,
    shares: int,
    specs: list[tuple[str, str, int, str]],
    data: st.DataObject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`shares`: the racing batches apply as one transaction per share of the stripes, however
    few their ticks."""
    monkeypatch.setattr("rwasync.pricing.apply.SHARED_FROM", 1)
    ticks = [
        price(provider, asset, amount, at(minute), accepted_at=at(100 + i))
        for i, (provider, asset, minute, amount) in enumerate(specs)
    ]
    applier = PriceApplier(db)
    await reset(db)
    for tick in sorted(ticks, key=lambda t: t.accepted_at):  # in acceptance order, one by one
        await applier.apply([tick])
    expected = await state(db)

    await reset(db)
    shuffled = data.draw(st.permutations(ticks), label="delivery order")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(ticks)), max_size=4), label="cuts"))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(ticks)], strict=False)]
    batches = [b for b in batches if b]
    # Batches race each other, as messages on several replicas would.
    racing = PriceApplier(db, shares=shares)
    await asyncio.gather(*(racing.apply(batch) for batch in batches))
    # A redelivery of everything changes nothing.
    await racing.apply(shuffled)
    assert await state(db) == expected


async def receipt(db: Database, tick: PriceUpdated) -> tuple[str, str | None, bool | None]:
    row = await db.fetchrow(
        "SELECT status, reason, latest FROM event_receipts WHERE event_id = $1", tick.event_id
    )
    assert row is not None
    return row["status"], row["reason"], row["latest"]


async def test_a_held_tick_is_invisible_and_a_late_tick_re_checks_the_ones_after_it(
    db: Database, policed: str
) -> None:
    applier = PriceApplier(db)
    base = price(policed, "a1", "100", at(1))
    jump = price(policed, "a1", "200", at(3))
    await applier.apply([base])
    await applier.apply([jump])
    assert (await receipt(db, jump))[0] == "held"
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("100")
    # A late tick between them at the new level: the jump is now measured from it.
    bridge = price(policed, "a1", "140", at(2), accepted_at=at(4))
    await applier.apply([bridge])
    assert (await receipt(db, bridge))[:1] == ("applied",)
    assert await receipt(db, jump) == ("applied", None, True)
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("200")


async def test_without_a_policy_nothing_is_held(db: Database, provider_id: str) -> None:
    applier = PriceApplier(db)
    ticks = [price(provider_id, "a1", amount, at(i)) for i, amount in enumerate(["1", "1000", "2"])]
    await applier.apply(ticks)
    assert {(await receipt(db, t))[0] for t in ticks} == {"applied"}


async def test_currency_check_uses_the_assets_currency(db: Database, policed: str) -> None:
    await db.execute(
        "UPDATE price_policies SET max_jump = NULL, currency_check = true WHERE provider_id = $1",
        policed,
    )
    await AssetApplier(db).apply(
        [upserted(policed, "a1", at(0), price={"amount": "50", "currency": "EUR"})]
    )
    applier = PriceApplier(db)
    euro = price(policed, "a1", "51", at(1), currency="EUR")
    dollar = price(policed, "a1", "55", at(2), currency="USD")
    unknown_asset = price(policed, "a2", "55", at(2), currency="USD")
    await applier.apply([euro, dollar, unknown_asset])
    assert (await receipt(db, euro))[0] == "applied"
    assert await receipt(db, dollar) == (
        "held",
        "currency USD differs from the asset's currency EUR",
        None,
    )
    assert (await receipt(db, unknown_asset))[0] == "applied"
    latest = await db.fetch("SELECT asset_id, amount FROM latest_prices ORDER BY 1")
    assert [(r["asset_id"], r["amount"]) for r in latest] == [
        ("a1", Decimal("51")),
        ("a2", Decimal("55")),
    ]


async def test_a_held_tick_replaced_at_its_as_of_ends_stale(db: Database, policed: str) -> None:
    applier = PriceApplier(db)
    await applier.apply([price(policed, "a1", "100", at(1))])
    wrong = price(policed, "a1", "1000", at(2), accepted_at=at(3))
    corrected = price(policed, "a1", "101", at(2), accepted_at=at(4))
    await applier.apply([wrong])
    await applier.apply([corrected])
    assert (await receipt(db, wrong))[0] == "stale_ignored"
    assert await receipt(db, corrected) == ("applied", None, True)


async def test_a_policy_set_while_pricing_runs_holds_the_very_next_tick(
    db: Database, provider_id: str
) -> None:
    """The applier remembers which providers have a policy; the apply statement checks that
    belief, so a policy set (or switched off) by the operator applies to the next tick at once."""
    applier = PriceApplier(db)
    await applier.apply([price(provider_id, "a1", "100", at(1))])
    await applier.apply([price(provider_id, "a1", "101", at(2))])  # remembered as policy-free
    await db.execute(
        "INSERT INTO price_policies (provider_id, max_jump) VALUES ($1, 0.5)", provider_id
    )
    jump = price(provider_id, "a1", "300", at(3))
    other = price(provider_id, "a2", "7", at(3))
    await applier.apply([jump, other])
    status, reason, latest = await receipt(db, jump)
    assert (status, latest) == ("held", None) and reason
    assert (await receipt(db, other))[0] == "applied"
    assert await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'") == Decimal(
        "101"
    )
    # Switched off: the next jump is applied (holds already made stay).
    await db.execute(
        "UPDATE price_policies SET max_jump = NULL WHERE provider_id = $1", provider_id
    )
    second = price(provider_id, "a1", "900", at(4))
    await applier.apply([second])
    assert await receipt(db, second) == ("applied", None, True)
    assert (await receipt(db, jump))[0] == "held"


async def test_without_a_policy_a_duplicate_of_a_held_tick_takes_over_its_hold(
    db: Database, policed: str
) -> None:
    applier = PriceApplier(db)
    await applier.apply([price(policed, "a1", "100", at(1))])
    held = price(policed, "a1", "300", at(2), accepted_at=at(3))
    await applier.apply([held])
    status, reason, _ = await receipt(db, held)
    assert status == "held"
    await db.execute("DELETE FROM price_policies WHERE provider_id = $1", policed)
    again = price(policed, "a1", "300.0", at(2), accepted_at=at(4))
    await applier.apply([again])
    assert await receipt(db, again) == ("held", reason, None)
    assert await receipt(db, held) == (
        "stale_ignored",
        "replaced by a later-accepted price for the same as_of",
        None,
    )
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("100")


async def visibility(db: Database, asset_id: str = "a1") -> list[tuple[Decimal, str]]:
    rows = await db.fetch(
        "SELECT amount, state FROM price_history WHERE asset_id = $1 ORDER BY as_of", asset_id
    )
    return [(r["amount"], r["state"]) for r in rows]


async def test_an_old_outlier_arriving_after_a_series_is_held_and_the_series_stays_visible(
    db: Database, policed: str
) -> None:
    """A tick dated before the whole series (a late backfill) has no earlier price to be measured
    from; the next two ticks agree with each other and not with it, so it is the one held."""
    applier = PriceApplier(db)
    series = [price(policed, "a1", amount, at(10 + i)) for i, amount in enumerate(["100", "101"])]
    current = price(policed, "a1", "102", at(12))
    for tick in [*series, current]:
        await applier.apply([tick])
    old = price(policed, "a1", "1000", at(1), accepted_at=at(20))
    await applier.apply([old])
    status, reason, latest = await receipt(db, old)
    assert (status, latest) == ("held", None)
    assert reason is not None and reason.startswith("no earlier price, and the next price 100 USD")
    assert "moves 90 % from it, confirmed by the price after it (101 USD" in reason
    for tick in series:
        assert (await receipt(db, tick))[:2] == ("applied", None)
    assert await receipt(db, current) == ("applied", None, True)
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("102")
    assert await visibility(db) == [
        (Decimal("1000"), "held"),
        (Decimal("100"), "visible"),
        (Decimal("101"), "visible"),
        (Decimal("102"), "visible"),
    ]


@pytest.mark.parametrize(
    "amounts",
    [
        # An old outlier, then a series: the outlier is held whatever the order.
        ["1000", "100", "101", "102"],
        # Two agreeing old ticks are a level: the series after them jumps and is held.
        ["1000", "1010", "100", "101"],
        # An outlier, a tick that does not confirm the next one, and a tick back at its level.
        ["1000", "100", "300", "1020"],
    ],
)
async def test_holds_at_the_start_of_a_series_are_the_same_for_every_arrival_order(
    db: Database, policed: str, amounts: list[str]
) -> None:
    """Every order of arrival, one tick at a time and all at once, ends in the same prices,
    history states and receipts as the ticks applied in `as_of` order."""
    ticks = [
        price(policed, "a1", amount, at(i), accepted_at=at(100 + i))
        for i, amount in enumerate(amounts)
    ]
    applier = PriceApplier(db)
    await reset(db)
    for tick in ticks:
        await applier.apply([tick])
    expected = await state(db)
    for order in itertools.permutations(ticks):
        await reset(db)
        for tick in order:
            await applier.apply([tick])
        assert await state(db) == expected, [t.payload.amount for t in order]
    await reset(db)
    await applier.apply(list(reversed(ticks)))
    assert await state(db) == expected


async def test_a_lone_first_tick_is_visible_until_two_agreeing_ticks_outvote_it(
    db: Database, policed: str
) -> None:
    """The first tick of a new asset is taken as it is; a second that disagrees with it is held
    (one tick against one: the earlier stands); a third confirming the second makes the first
    the outlier, held, and the two shown."""
    applier = PriceApplier(db)
    first = price(policed, "a1", "1000", at(1))
    await applier.apply([first])
    assert await receipt(db, first) == ("applied", None, True)
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("1000")
    second = price(policed, "a1", "100", at(2))
    await applier.apply([second])
    assert (await receipt(db, second))[0] == "held"
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("1000")
    third = price(policed, "a1", "101", at(3))
    await applier.apply([third])
    assert (await receipt(db, first))[0] == "held"
    assert await receipt(db, second) == ("applied", None, False)
    assert await receipt(db, third) == ("applied", None, True)
    assert await visibility(db) == [
        (Decimal("1000"), "held"),
        (Decimal("100"), "visible"),
        (Decimal("101"), "visible"),
    ]


async def test_a_tick_between_a_held_outlier_and_the_series_re_checks_the_outlier(
    db: Database, policed: str
) -> None:
    """A late tick after a held outlier but before the series, at the outlier's level: the two
    now agree, are the first level, and the series after them jumps from it."""
    applier = PriceApplier(db)
    ticks = [price(policed, "a1", amount, at(m)) for m, amount in [(1, "1000"), (5, "100")]]
    ticks.append(price(policed, "a1", "101", at(6)))
    await applier.apply(ticks)
    assert [s for _, s in await visibility(db)] == ["held", "visible", "visible"]
    await applier.apply([price(policed, "a1", "1010", at(3), accepted_at=at(7))])
    assert [s for _, s in await visibility(db)] == ["visible", "visible", "held", "held"]
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("1010")
    assert (await receipt(db, ticks[0]))[0] == "applied"


async def test_a_policy_set_later_never_holds_the_ticks_applied_before_it(
    db: Database, provider_id: str
) -> None:
    """A policy applies to ticks applied from then on. A late tick under it re-checked every
    tick after it, those shown before the policy existed included: the latest price stepped
    back and history lost them (investor trial, with Lofty's real history)."""
    applier = PriceApplier(db)
    base = price(provider_id, "a1", "100", at(10))
    high = price(provider_id, "a1", "300", at(12))
    await applier.apply([base])
    await applier.apply([high])
    assert await receipt(db, high) == ("applied", None, True)
    assert await db.fetchval("SELECT bool_or(policed) FROM price_history") is False
    await db.execute(
        "INSERT INTO price_policies (provider_id, max_jump) VALUES ($1, 0.5)", provider_id
    )
    late = price(provider_id, "a1", "101", at(11), accepted_at=at(20))
    await applier.apply([late])
    assert await receipt(db, late) == ("applied", None, False)
    assert await receipt(db, high) == ("applied", None, True)
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("300")
    shown = await db.fetch(
        "SELECT amount FROM price_history WHERE state = 'visible' ORDER BY as_of"
    )
    assert [r["amount"] for r in shown] == [Decimal("100"), Decimal("101"), Decimal("300")]
    # Ticks applied under the policy are judged, from the settled ones before them too.
    jump = price(provider_id, "a1", "1000", at(13), accepted_at=at(21))
    await applier.apply([jump])
    status, reason, _ = await receipt(db, jump)
    assert status == "held" and reason is not None and "previous price 300 USD" in reason
    assert await db.fetchval("SELECT amount FROM latest_prices") == Decimal("300")


async def test_a_previous_release_writing_history_marks_its_ticks_judged(
    db: Database, provider_id: str
) -> None:
    """A previous release knows nothing of `policed` and names no value for it. Its checked
    path's ticks took 0027's default, false, and counted as applied without a policy: a release
    of one of its held ticks never re-checked the ticks after it (upgrade trial). Unnamed, the
    mark is now true (the rule as before 0027); this release names it on both paths."""
    await db.execute(
        """INSERT INTO price_history (provider_id, asset_id, as_of, amount, currency,
                                      accepted_at, event_id, state, hold_kind, hold_reason,
                                      held_at)
           VALUES ($1, 'old-1', $2, 100, 'USD', $2, gen_random_uuid(), 'held', 'jump',
                   'moves 300 %', now())""",
        provider_id,
        at(1),
    )
    await PriceApplier(db).apply([price(provider_id, "new-1", "100", at(2))])
    marks = await db.fetch(
        "SELECT asset_id, policed FROM price_history WHERE provider_id = $1 ORDER BY 1",
        provider_id,
    )
    assert [(r["asset_id"], r["policed"]) for r in marks] == [("new-1", False), ("old-1", True)]
