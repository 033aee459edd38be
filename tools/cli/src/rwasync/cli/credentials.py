"""Credentials of providers and partners: issue another, rotate (a new one overlapping the old
until the old is revoked), revoke, list; and partners, whose credentials act for the providers
they are granted (the request names one in `X-Tenant-Id`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import typer
from rich.table import Table

from rwasync.cli import queries
from rwasync.cli.common import (
    NameArgument,
    Refused,
    emit,
    listed,
    require_provider,
    run_db,
    set_disabled,
    table_time,
    unknown,
)
from rwasync.cli.flags import JsonFlag
from rwasync.schema.feeds import FeedSettingInvalid, parse_interval
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.tenants import IssuedCredential, issue_provider_credential, new_id

credential_app = typer.Typer(
    help="Credentials: issue, rotate, revoke, list.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
partner_app = typer.Typer(
    help="Partners: one credential acting for several providers.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Owner:
    """Whose credential: a provider's own or a partner's."""

    def __init__(self, provider_id: str | None, partner_id: str | None) -> None:
        self.provider_id = provider_id
        self.partner_id = partner_id

    async def issue(self, conn: asyncpg.Connection) -> dict[str, str]:
        credential = issue_provider_credential()
        if self.provider_id is not None:
            await conn.execute(
                queries.CREATE_CREDENTIAL,
                credential.key_id,
                self.provider_id,
                credential.secret_digest,
                credential.token_digest,
            )
        else:
            await conn.execute(
                queries.CREATE_PARTNER_CREDENTIAL,
                credential.key_id,
                self.partner_id,
                credential.secret_digest,
                credential.token_digest,
            )
        return self.shown(credential)

    def shown(self, credential: IssuedCredential) -> dict[str, str]:
        owner = (
            {"provider_id": self.provider_id}
            if self.provider_id is not None
            else {"partner_id": str(self.partner_id)}
        )
        return {
            **owner,
            "key_id": credential.key_id,
            "secret": credential.secret,
            "token": credential.token,
        }


async def _owner_of(conn: asyncpg.Connection, owner_id: str) -> Owner:
    if owner_id.startswith("ptn_"):
        await _require_partner(conn, owner_id)
        return Owner(None, owner_id)
    await require_provider(conn, owner_id)
    return Owner(owner_id, None)


async def _require_partner(conn: asyncpg.Connection, partner_id: str) -> None:
    if not await conn.fetchval(queries.PARTNER_EXISTS, partner_id):
        raise unknown("partner_id", partner_id, "partner")


def _timestamp(moment: datetime | None) -> str | None:
    return timestamp_text(moment) if moment is not None else None


OwnerArgument = Annotated[str, typer.Argument(help="A provider id (prv_…) or partner id (ptn_…).")]


@credential_app.command("issue")
def credential_issue(owner_id: OwnerArgument, as_json: JsonFlag = False) -> None:
    """Issue another credential; its secret and token are shown only now."""

    async def work(conn: asyncpg.Connection) -> dict[str, str]:
        return await (await _owner_of(conn, owner_id)).issue(conn)

    emit(run_db(work), as_json)


def _overlap(text: str) -> int:
    """`--overlap`: a duration from 1 s (a provider switching at once wants the old key gone in
    seconds; no feed schedule's 60 s floor) to 366 d; anything else is a usage error."""
    try:
        return parse_interval(text, minimum=1)
    except FeedSettingInvalid as exc:
        raise typer.BadParameter(exc.message) from None


@credential_app.command("rotate")
def credential_rotate(
    key_id: str,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            parser=_overlap,
            help="Revoke the old credential after this long (e.g. 30s, 15m, 24h; 1s to 366d); "
            "default: it stays valid until `credential revoke`.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new credential for the same owner; the old one keeps working until revoked."""
    seconds = overlap

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            row = await conn.fetchrow(queries.CREDENTIAL_OWNER, key_id)
            if row is None:
                raise unknown("key_id", key_id, "credential")
            if not row["live"]:
                raise Refused(
                    f"key_id {key_id!r}: the credential is revoked; issue a new one with "
                    "`rwasync credential issue OWNER_ID`"
                )
            issued: dict[str, Any] = await Owner(row["provider_id"], row["partner_id"]).issue(conn)
            # When the old key stops: a revocation an earlier rotation scheduled stands (an
            # overlap may bring it forward, never put it off), and is said, not hidden as null.
            revoked_at = row["revoked_at"]
            if seconds is not None:
                revoked_at = await conn.fetchval(
                    queries.REVOKE_CREDENTIAL,
                    key_id,
                    datetime.now(UTC) + timedelta(seconds=seconds),
                )
        return {**issued, "replaces": key_id, "old_revoked_at": _timestamp(revoked_at)}

    emit(run_db(work), as_json)


@credential_app.command("revoke")
def credential_revoke(key_id: str, as_json: JsonFlag = False) -> None:
    """Revoke a credential now (services stop accepting it within their auth cache time).
    Revoking a revoked one again changes nothing and says so (`already_revoked`), so that a
    script may simply repeat it."""
    now = datetime.now(UTC)

    async def work(conn: asyncpg.Connection) -> datetime:
        revoked: datetime | None = await conn.fetchval(queries.REVOKE_CREDENTIAL, key_id, now)
        if revoked is None:
            raise unknown("key_id", key_id, "credential")
        return revoked

    revoked_at = run_db(work)
    # An earlier revocation is kept (a later one scheduled by `rotate --overlap` is brought
    # forward to now): one before now is this command's doing only if it were now.
    emit(
        {
            "key_id": key_id,
            "revoked_at": _timestamp(revoked_at),
            "already_revoked": revoked_at < now,
        },
        as_json,
    )


@credential_app.command("list")
def credential_list(owner_id: OwnerArgument, as_json: JsonFlag = False) -> None:
    """A provider's or partner's credentials (never their secrets)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        await _owner_of(conn, owner_id)
        rows = await conn.fetch(queries.LIST_CREDENTIALS, owner_id)
        # `live`: whether it still authenticates, so that a revocation a rotation's overlap
        # scheduled for later is not read as one that has happened
        return [
            {
                "key_id": r["key_id"],
                "created_at": _timestamp(r["created_at"]),
                "revoked_at": _timestamp(r["revoked_at"]),
                "live": r["live"],
            }
            for r in rows
        ]

    items = run_db(work)

    def table() -> Table:
        t = Table("key_id", "created_at", "revoked_at", "live")
        for item in items:
            t.add_row(
                item["key_id"],
                table_time(item["created_at"]),
                table_time(item["revoked_at"]),
                "yes" if item["live"] else "no",
            )
        return t

    emit({"items": items}, as_json, table)


@partner_app.command("create")
def partner_create(
    name: NameArgument,
    providers: Annotated[
        list[str] | None,
        typer.Option("--provider", help="A provider it may act for (repeat for several)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a partner with one credential, acting for the given providers."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        partner_id = new_id("ptn")
        granted = list(dict.fromkeys(providers or []))  # a provider named twice is granted once
        async with conn.transaction():
            await conn.execute(queries.CREATE_PARTNER, partner_id, name)
            for provider_id in granted:
                await require_provider(conn, provider_id)
                await conn.execute(queries.GRANT_PARTNER, partner_id, provider_id)
            issued = await Owner(None, partner_id).issue(conn)
        return {**issued, "providers": granted}

    emit(run_db(work), as_json)


@partner_app.command("grant")
def partner_grant(partner_id: str, provider_id: str, as_json: JsonFlag = False) -> None:
    """Let a partner act for one more provider."""

    async def work(conn: asyncpg.Connection) -> None:
        await _require_partner(conn, partner_id)
        await require_provider(conn, provider_id)
        await conn.execute(queries.GRANT_PARTNER, partner_id, provider_id)

    run_db(work)
    emit({"partner_id": partner_id, "provider_id": provider_id, "granted": True}, as_json)


@partner_app.command("revoke")
def partner_revoke(partner_id: str, provider_id: str, as_json: JsonFlag = False) -> None:
    """Stop a partner acting for a provider (within the services' auth cache time). Like
    `grant`, doing it again succeeds: `already_revoked` says the partner did not act for it."""

    async def work(conn: asyncpg.Connection) -> bool:
        await _require_partner(conn, partner_id)
        await require_provider(conn, provider_id)
        done: str = await conn.execute(queries.UNGRANT_PARTNER, partner_id, provider_id)
        return done == "DELETE 0"

    already = run_db(work)
    emit(
        {
            "partner_id": partner_id,
            "provider_id": provider_id,
            "granted": False,
            "already_revoked": already,
        },
        as_json,
    )


@partner_app.command("disable")
def partner_disable(partner_id: str, as_json: JsonFlag = False) -> None:
    """Disable a partner: its credentials stop authenticating (within the services' auth cache
    time), for every provider it acts for; its grants are kept."""
    set_disabled(queries.SET_PARTNER_DISABLED, "partner_id", partner_id, True, as_json)


@partner_app.command("enable")
def partner_enable(partner_id: str, as_json: JsonFlag = False) -> None:
    """Enable a disabled partner again: its credentials act for its providers again."""
    set_disabled(queries.SET_PARTNER_DISABLED, "partner_id", partner_id, False, as_json)


@partner_app.command("list")
def partner_list(as_json: JsonFlag = False) -> None:
    """List partners, oldest first, with the providers each acts for."""

    items = listed(queries.LIST_PARTNERS)

    def table() -> Table:
        # The creation time is left to `--json`: 80 columns hold the ids whole beside the name.
        t = Table("partner_id", "name", "disabled", "provider_ids")
        for item in items:
            t.add_row(
                item["partner_id"],
                item["name"],
                str(item["disabled"]),
                "\n".join(item["providers"]),
            )
        return t

    emit({"items": items}, as_json, table)
