"""`rwasync price`: a provider's hold policy, and held ticks listed, released (the ticks after
it checked again, the latest price following) and rejected, each printing one JSON document."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from rwasync.platform.db import Database
from rwasync.pricing.apply import PriceApplier
from tests.integration.cli.test_commands import rwasync, usage_error
from tests.support.events import at, price

pytestmark = pytest.mark.integration


async def cli(database_url: str, *args: str, code: int = 0) -> Any:
    result = await asyncio.to_thread(rwasync, database_url, *args, "--json")
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout) if code == 0 else result.stderr


async def status(db: Database, event_id: object) -> tuple[str, bool | None]:
    row = await db.fetchrow(
        "SELECT status, latest FROM event_receipts WHERE event_id = $1", event_id
    )
    assert row is not None
    return row["status"], row["latest"]


async def test_policy_set_and_refusals(database_url: str, provider_id: str) -> None:
    policy = await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    assert (policy["max_jump"], policy["currency_check"]) == ("0.5", False)
    policy = await cli(database_url, "price", "policy", "set", provider_id, "--currency-check")
    assert (policy["max_jump"], policy["currency_check"]) == (None, True)
    for bad in ("0", "-1", "abc", "NaN", "1e400", "1e-400", "1001"):
        done = await asyncio.to_thread(
            rwasync, database_url, "price", "policy", "set", provider_id, "--max-jump", bad
        )
        assert "Invalid value for '--max-jump'" in usage_error(done), bad
    err = await cli(database_url, "price", "policy", "set", "prv_nobody", code=1)
    assert err == "error: provider_id 'prv_nobody': unknown provider\n"


async def test_held_list_release_and_reject(
    database_url: str, db: Database, provider_id: str
) -> None:
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    applier = PriceApplier(db)
    base, jump, after, spike = (
        price(provider_id, "a1", "100", at(1)),
        price(provider_id, "a1", "300", at(2)),
        price(provider_id, "a1", "310", at(3)),
        price(provider_id, "a2", "1", at(1)),
    )
    # Two agreeing ticks set a1's level (a lone first tick whose next two ticks agree with each
    # other but not with it would be held itself, as an outlier, and they shown).
    opening = price(provider_id, "a1", "99", at(0))
    await applier.apply([opening, base, price(provider_id, "a2", "50", at(0))])
    await applier.apply([jump, after, spike])
    held = await cli(database_url, "price", "held", "list")
    assert {i["event_id"] for i in held["items"]} == {
        str(jump.event_id),
        str(after.event_id),
        str(spike.event_id),
    }
    assert all(i["reason"] and i["kind"] == "jump" for i in held["items"])
    assert await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'") == Decimal(
        "100"
    )

    released = await cli(database_url, "price", "held", "release", str(jump.event_id))
    assert released == {
        "items": [{"event_id": str(jump.event_id), "status": "applied", "latest": False}],
        "rechecked": [
            {"event_id": str(after.event_id), "status": "applied", "reason": None, "latest": True}
        ],
    }
    # The tick after it now measures from it: within 50 %, so it is shown too, and is the latest.
    assert await status(db, after.event_id) == ("applied", True)
    assert await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'") == Decimal(
        "310"
    )

    rejected = await cli(database_url, "price", "held", "reject", str(spike.event_id))
    assert rejected["items"][0]["status"] == "rejected"
    assert await status(db, spike.event_id) == ("rejected", None)
    assert (await cli(database_url, "price", "held", "list"))["items"] == []
    # Deciding again, or an unknown id, changes nothing and says so.
    err = await cli(database_url, "price", "held", "reject", str(spike.event_id), code=1)
    assert err.startswith(f"error: event_id '{spike.event_id}': no held price tick"), err
    bad = await asyncio.to_thread(rwasync, database_url, "price", "held", "release", "not-a-uuid")
    assert "'not-a-uuid' is not an event id" in usage_error(bad)
    # A redelivery of the rejected tick stays refused.
    await applier.apply([spike])
    assert await status(db, spike.event_id) == ("rejected", None)
    assert await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a2'") == Decimal(
        "50"
    )


async def test_releasing_one_tick_with_the_check_off_releases_no_other(
    database_url: str, db: Database, provider_id: str
) -> None:
    """Turning the policy off releases nothing already held: releasing one tick then shows that
    tick only, not the holds after it (the re-check has no jump rule to pass them)."""
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    applier = PriceApplier(db)
    base = price(provider_id, "a1", "100", at(1))
    jump = price(provider_id, "a1", "300", at(2))  # held: +200 %
    spike = price(provider_id, "a1", "9000", at(3))  # held: +8,900 % from 100
    await applier.apply([base])
    await applier.apply([jump, spike])
    assert await status(db, spike.event_id) == ("held", None)

    await cli(database_url, "price", "policy", "set", provider_id)  # checks off
    await cli(database_url, "price", "held", "release", str(jump.event_id))
    assert await status(db, jump.event_id) == ("applied", True)
    assert await status(db, spike.event_id) == ("held", None)
    latest = await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'")
    assert latest == Decimal("300")


async def test_a_release_lists_the_later_ticks_it_holds_now(
    database_url: str, db: Database, provider_id: str
) -> None:
    """Released, a new level makes a later tick back at the old one a jump: it was shown to
    investors and is held now. The release says so, or an operator would never know."""
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    applier = PriceApplier(db)
    base = price(provider_id, "a1", "100", at(1))
    jump = price(provider_id, "a1", "300", at(2))  # held: +200 % from 100
    back = price(provider_id, "a1", "101", at(3))  # applied: +1 % from 100
    await applier.apply([base])
    await applier.apply([jump, back])
    assert await status(db, back.event_id) == ("applied", True)

    released = await cli(database_url, "price", "held", "release", str(jump.event_id))
    # The released tick is the latest price now: the one after it is held.
    assert released["items"] == [
        {"event_id": str(jump.event_id), "status": "applied", "latest": True}
    ]
    [moved] = released["rechecked"]
    assert (moved["event_id"], moved["status"]) == (str(back.event_id), "held")
    assert moved["reason"] and moved["latest"] is None
    assert await status(db, back.event_id) == ("held", None)
    latest = await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'")
    assert latest == Decimal("300")


async def test_policy_show_reads_the_policy_back(database_url: str, provider_id: str) -> None:
    # Never set: holds are off, and it says so (no updated_at, `active` false).
    assert await cli(database_url, "price", "policy", "show", provider_id) == {
        "provider_id": provider_id,
        "max_jump": None,
        "currency_check": False,
        "active": False,
        "updated_at": None,
    }
    table = await asyncio.to_thread(rwasync, database_url, "price", "policy", "show", provider_id)
    assert table.returncode == 0, table.stderr
    assert "no policy" in table.stdout and provider_id in table.stdout

    policy = await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    shown = await cli(database_url, "price", "policy", "show", provider_id)
    assert shown == policy | {"active": True}
    table = await asyncio.to_thread(rwasync, database_url, "price", "policy", "show", provider_id)
    assert "0.5" in table.stdout and "no policy" not in table.stdout

    # Set without options: a row, but no check; shown as off too.
    await cli(database_url, "price", "policy", "set", provider_id)
    shown = await cli(database_url, "price", "policy", "show", provider_id)
    assert (shown["active"], shown["max_jump"], shown["currency_check"]) == (False, None, False)
    assert shown["updated_at"] is not None

    for unknown in ("prv_nobody", "not a provider!"):
        err = await cli(database_url, "price", "policy", "show", unknown, code=1)
        assert err == f"error: provider_id {unknown!r}: unknown provider\n", err


async def test_held_list_refuses_an_unknown_provider(database_url: str, provider_id: str) -> None:
    # A typo must not read as "nothing held".
    for unknown in ("prv_nobody", "not a provider!"):
        result = await asyncio.to_thread(
            rwasync, database_url, "price", "held", "list", "--provider", unknown, "--json"
        )
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert result.stderr == f"error: provider_id {unknown!r}: unknown provider\n"
    assert await cli(database_url, "price", "held", "list", "--provider", provider_id) == {
        "items": []
    }


async def test_held_list_table_fits_80_columns_with_its_ids_whole(
    database_url: str, db: Database
) -> None:
    created = await cli(database_url, "provider", "create", "Wide Estates")
    provider_id = created["provider_id"]  # prv_ and 16 hex digits, as operators see them
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    asset_id = "det-2026-main-street-12b"
    applier = PriceApplier(db)
    await applier.apply([price(provider_id, asset_id, "100", at(1))])
    jump = price(provider_id, asset_id, "12345.678", at(2))
    await applier.apply([jump])
    for extra in ((), ("--provider", provider_id)):
        # In a pipe (80 columns, COLUMNS unset).
        table = await asyncio.to_thread(rwasync, database_url, "price", "held", "list", *extra)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), table.stdout
        words = table.stdout.split()
        for whole in (str(jump.event_id), asset_id, "12345.678", "allows"):
            assert whole in words, (whole, table.stdout)
        assert (provider_id in words) == (not extra), table.stdout


async def test_policy_list_shows_which_providers_have_holds_active(
    database_url: str, provider_id: str
) -> None:
    """Every provider, `active` first: an operator sees at once whose ticks can be held."""
    never = (await cli(database_url, "provider", "create", "Never Set Estates"))["provider_id"]
    off = (await cli(database_url, "provider", "create", "Checks Off Estates"))["provider_id"]
    await cli(database_url, "price", "policy", "set", off)  # a row, but no check
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.25")
    listed = (await cli(database_url, "price", "policy", "list"))["items"]
    assert [(p["provider_id"], p["active"]) for p in listed] == [
        (provider_id, True),
        *sorted([(never, False), (off, False)]),
    ]
    shown = await cli(database_url, "price", "policy", "show", provider_id)
    assert listed[0] == shown and shown["max_jump"] == "0.25"
    assert {p["provider_id"]: p["updated_at"] is None for p in listed}[never] is True

    # In a pipe (80 columns): one row a provider, its id whole, `active` a column of its own.
    table = await asyncio.to_thread(rwasync, database_url, "price", "policy", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    rows = {line.split()[1]: line.split()[3] for line in lines if "prv_" in line}
    assert rows == {provider_id: "yes", never: "no", off: "no"}, table.stdout
    shown_table = await asyncio.to_thread(
        rwasync, database_url, "price", "policy", "show", provider_id
    )
    assert "active" in shown_table.stdout and "yes" in shown_table.stdout.split()


async def test_rejecting_a_tick_checks_the_first_ticks_again(
    database_url: str, db: Database, provider_id: str
) -> None:
    """A rejected tick no longer counts among the two ticks that can outvote an asset's first:
    rejecting it leaves the states the series would have had without it."""
    await cli(database_url, "price", "policy", "set", provider_id, "--max-jump", "0.5")
    applier = PriceApplier(db)
    first, spike, level, again = (
        price(provider_id, "a1", amount, at(i))
        for i, amount in enumerate(["100", "300", "900", "910"])
    )
    await applier.apply([first, spike, level, again])
    # 300 jumps from 100 and 900 from 300: 300 is unconfirmed, so 100 stands and the rest jump.
    assert await status(db, first.event_id) == ("applied", True)
    assert {(await status(db, t.event_id))[0] for t in (spike, level, again)} == {"held"}

    rejected = await cli(database_url, "price", "held", "reject", str(spike.event_id))
    assert rejected["items"] == [
        {"event_id": str(spike.event_id), "status": "rejected", "reason": "rejected by an operator"}
    ]
    rechecked = {r["event_id"]: (r["status"], r["latest"]) for r in rejected["rechecked"]}
    assert rechecked == {
        str(first.event_id): ("held", None),
        str(level.event_id): ("applied", False),
        str(again.event_id): ("applied", True),
    }
    assert await status(db, first.event_id) == ("held", None)
    assert await db.fetchval("SELECT amount FROM latest_prices WHERE asset_id = 'a1'") == Decimal(
        "910"
    )
