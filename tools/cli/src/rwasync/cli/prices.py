"""Prices: a provider's sanity-hold policy, and the held ticks an operator releases or rejects.

Releasing a tick makes it visible and a reference for the ticks after it, which are checked again
against it (their holds may lift or appear), then the latest price follows; rejecting one ends it
`rejected` and changes nothing else (a held tick is never a reference). Stream subscribers see a
change this causes within the pricing service's poll interval (the CLI publishes no wake-up).
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

import asyncpg
import typer
from rich.table import Table

from rwasync.cli import queries
from rwasync.cli.common import (
    Refused,
    emit,
    integer_from,
    require_provider,
    run_db,
    table_time,
    unknown,
)
from rwasync.cli.flags import JsonFlag
from rwasync.schema.asset import normalize_decimal
from rwasync.schema.events import ReceiptStatus
from rwasync.schema.timestamps import timestamp_text
from rwasync.store import prices, receipts
from rwasync.store.receipts import Redecision

price_app = typer.Typer(
    help="Prices: sanity-hold policies and held ticks.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
policy_app = typer.Typer(
    help="A provider's sanity-hold policy.", no_args_is_help=True, rich_markup_mode="markdown"
)
held_app = typer.Typer(
    help="Held price ticks: list, release, reject.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
price_app.add_typer(policy_app, name="policy")
price_app.add_typer(held_app, name="held")

REJECTED_REASON = "rejected by an operator"


# The jump check's bounds: 0.01 % to 100,000 % (beyond either, no price could pass, or none be
# held; and a ratio such as 1e-400 printed as "the policy allows 0 %").
MIN_JUMP: Final = Decimal("0.0001")
MAX_JUMP: Final = Decimal(1000)


def _jump_ratio(text: str) -> Decimal:
    """`--max-jump` as the exact decimal stored (a float would store 0.1 as 0.1000000000000000055…);
    anything else than a number within the bounds is a usage error."""
    bounds = f"a number from {MIN_JUMP} to {MAX_JUMP} (0.5 means 50 %)"
    try:
        ratio = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not {bounds}") from None
    if not ratio.is_finite() or not MIN_JUMP <= ratio <= MAX_JUMP:
        raise typer.BadParameter(f"must be {bounds} (got {text})")
    return ratio


@policy_app.command("set")
def policy_set(
    provider_id: str,
    max_jump: Annotated[
        Decimal | None,
        typer.Option(
            "--max-jump",
            parser=_jump_ratio,
            help="Hold a tick moving more than this ratio (0.5 = 50 %) from the previous "
            "visible price in as_of order. Omitted: no jump check.",
        ),
    ] = None,
    currency_check: Annotated[
        bool,
        typer.Option(
            "--currency-check/--no-currency-check",
            help="Hold a tick quoted in another currency than its asset's.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set (replace) a provider's sanity-hold policy; with no option, holds are off."""

    async def work(conn: asyncpg.Connection) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(
            queries.SET_PRICE_POLICY, provider_id, max_jump, currency_check
        )
        if row is None:
            raise unknown("provider_id", provider_id, "provider")
        return row

    emit(policy_document(run_db(work)), as_json)


def policy_document(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "provider_id": row["provider_id"],
        "max_jump": normalize_decimal(row["max_jump"]) if row["max_jump"] else None,
        "currency_check": row["currency_check"],
        "updated_at": timestamp_text(row["updated_at"]) if row["updated_at"] else None,
    }


def shown_policy(row: asyncpg.Record) -> dict[str, Any]:
    """A policy as `show` and `list` print it: `active` when it checks something (`max_jump`
    set or `currency_check` on); off, no new tick is held, though ticks held before stay held."""
    # Set without options, a policy has a row yet checks nothing: both read as holds off.
    return policy_document(row) | {"active": row["max_jump"] is not None or row["currency_check"]}


def policy_table(policies: list[dict[str, Any]]) -> Table:
    # The last two headers in words, which wrap: 80 columns hold the row on one line.
    t = Table("provider_id", "active", "max_jump", "currency check", "updated at")
    t.columns[-1].no_wrap = True
    for policy in policies:
        t.add_row(
            policy["provider_id"],
            "yes" if policy["active"] else "no",
            policy["max_jump"] or "-",
            "on" if policy["currency_check"] else "off",
            table_time(policy["updated_at"]) or "never set",
        )
    return t


@policy_app.command("show")
def policy_show(provider_id: str, as_json: JsonFlag = False) -> None:
    """A provider's sanity-hold policy; `active` false: its checks are off and no new tick of it
    is held, though ticks held before stay held (none was ever set when `updated_at` is null)."""

    async def work(conn: asyncpg.Connection) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(queries.PRICE_POLICY, provider_id)
        if row is None:
            raise unknown("provider_id", provider_id, "provider")
        return row

    document = shown_policy(run_db(work))

    def table() -> Table:
        t = policy_table([document])
        if not document["active"]:
            t.caption = "no policy: no new tick of this provider is held"
        return t

    emit(document, as_json, table)


@policy_app.command("list")
def policy_list(as_json: JsonFlag = False) -> None:
    """Every provider's sanity-hold policy, active ones first: which providers' ticks can be
    held (a provider no policy was ever set for is listed as inactive, `updated_at` null)."""
    rows = run_db(lambda conn: conn.fetch(queries.PRICE_POLICIES))
    items = [shown_policy(row) for row in rows]
    emit({"items": items}, as_json, lambda: policy_table(items))


# Held ticks `held list` prints at most.
MAX_HELD: Final = 10000


def held_item(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "event_id": str(row["event_id"]),
        "provider_id": row["provider_id"],
        "asset_id": row["asset_id"],
        "amount": normalize_decimal(row["amount"]),
        "currency": row["currency"].strip(),
        "as_of": timestamp_text(row["as_of"]),
        "received_at": timestamp_text(row["accepted_at"]),
        "kind": row["hold_kind"],
        "reason": row["hold_reason"],
        "held_at": timestamp_text(row["held_at"]),
    }


@held_app.command("list")
def held_list(
    provider_id: Annotated[str | None, typer.Option("--provider")] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", parser=integer_from(1, MAX_HELD), help=f"At most (1-{MAX_HELD})."),
    ] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List held price ticks, oldest hold first."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        await require_provider(conn, provider_id)
        return [
            held_item(r) for r in await conn.fetch(queries.LIST_HELD_PRICES, provider_id, limit)
        ]

    items = run_db(work)

    def table() -> Table:
        # 80 columns hold a 36-character event id beside nothing else readable, so each tick is
        # one cell of lines (event id, asset, provider unless --provider named it, price and
        # as_of) beside its reason, which wraps in the rest (`--json` has every field).
        t = Table("event_id", "reason")
        for i in items:
            lines = [i["event_id"], f"asset {i['asset_id']}"]
            if provider_id is None:
                lines.append(f"provider {i['provider_id']}")
            lines.append(f"{i['amount']} {i['currency']} as of {table_time(i['as_of'])}")
            t.add_row("\n".join(lines), i["reason"])
        return t

    emit({"items": items}, as_json, table)


def _event_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an event id (a UUID: see `rwasync price held list`)"
        ) from None


EventIds = Annotated[
    list[uuid.UUID], typer.Argument(parser=_event_id, help="Event ids of held ticks.")
]


async def decide_held(
    conn: asyncpg.Connection, ids: list[uuid.UUID], state: str
) -> list[asyncpg.Record]:
    """Move the held ticks with these ids to `state`, their assets locked first; Refused
    (nothing changed) when an id names no held tick. Returns the ticks."""
    found = await conn.fetch(queries.HELD_PRICES, ids)
    await prices.lock_assets(conn, {(r["provider_id"], r["asset_id"]) for r in found})
    rows: list[asyncpg.Record] = await conn.fetch(queries.HELD_PRICES, ids)  # still held?
    missing = set(ids) - {r["event_id"] for r in rows}
    if missing:
        names = ", ".join(repr(str(m)) for m in sorted(missing))
        raise Refused(
            f"event_id {names}: no held price tick (unknown, or released or rejected already);"
            " nothing was changed"
        )
    await conn.execute(queries.DECIDE_HELD_PRICES, ids, state)
    return rows


def _rechecked(rechecked: list[Redecision]) -> list[dict[str, Any]]:
    """The later ticks a re-check moved, either way: an operator deciding a tick must see one
    the decision now holds as well as one it lets through."""
    return [
        {
            "event_id": str(r.event_id),
            "status": str(r.status),
            "reason": r.reason,
            "latest": r.latest,
        }
        for r in rechecked
    ]


@held_app.command("release")
def held_release(
    event_id: EventIds,
    as_json: JsonFlag = False,
) -> None:
    """Show held ticks to investors; the ticks after each are checked again against it, and
    those whose decision that changes are listed (`rechecked`)."""
    ids = list(dict.fromkeys(event_id))

    async def work(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
        async with conn.transaction():
            rows = await decide_held(conn, ids, "released")
            starts = prices.starts_of((r["provider_id"], r["asset_id"], r["as_of"]) for r in rows)
            policies = await prices.policies(conn, {r["provider_id"] for r in rows})
            changes = await prices.reevaluate(conn, starts, policies)
            refresh = await prices.refresh_latest(conn, starts)
            released = [
                Redecision(
                    r["event_id"],
                    ReceiptStatus.APPLIED,
                    None,
                    refresh.latest.get((r["provider_id"], r["asset_id"])) == str(r["event_id"]),
                )
                for r in rows
            ]
            rechecked = prices.redecisions(changes, refresh.latest)
            await receipts.redecide_price_ticks(conn, released + rechecked)
        return {
            "items": [
                {"event_id": str(r.event_id), "status": str(r.status), "latest": r.latest}
                for r in released
            ],
            "rechecked": _rechecked(rechecked),
        }

    emit(run_db(work), as_json)


@held_app.command("reject")
def held_reject(
    event_id: EventIds,
    as_json: JsonFlag = False,
) -> None:
    """Refuse held ticks for good: they end `rejected` and are never shown. A rejected tick no
    longer counts among the ticks after an asset's first ones that can outvote them, so the
    series is checked again; the ticks whose decision that changes are listed (`rechecked`)."""
    ids = list(dict.fromkeys(event_id))

    async def work(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
        async with conn.transaction():
            rows = await decide_held(conn, ids, "rejected")
            starts = prices.starts_of((r["provider_id"], r["asset_id"], r["as_of"]) for r in rows)
            policies = await prices.policies(conn, {r["provider_id"] for r in rows})
            changes = await prices.reevaluate(conn, starts, policies)
            rechecked: list[Redecision] = []
            if changes:
                refresh = await prices.refresh_latest(conn, starts)
                rechecked = prices.redecisions(changes, refresh.latest)
            rejected = [Redecision(i, ReceiptStatus.REJECTED, REJECTED_REASON) for i in ids]
            await receipts.redecide_price_ticks(conn, rejected + rechecked)
        return {
            "items": [
                {"event_id": str(i), "status": "rejected", "reason": REJECTED_REASON} for i in ids
            ],
            "rechecked": _rechecked(rechecked),
        }

    emit(run_db(work), as_json)
