"""Providers (tenants), their credentials, and readers (investor read access)."""

from __future__ import annotations

from typing import Annotated, Final

import asyncpg
import typer
from rich.table import Table

from rwasync.cli import queries
from rwasync.cli.common import (
    NameArgument,
    emit,
    integer_from,
    listed,
    number_from,
    run_db,
    set_disabled,
    table_time,
    unknown,
)
from rwasync.cli.flags import JsonFlag
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.tenants import digest, issue_provider_credential, issue_reader_token, new_id

provider_app = typer.Typer(
    help="Providers (tenants) and their credentials.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
reader_app = typer.Typer(
    help="Readers: investor-side read access.", no_args_is_help=True, rich_markup_mode="markdown"
)


@provider_app.command("create")
def provider_create(name: NameArgument, as_json: JsonFlag = False) -> None:
    """Create a provider with one credential; its secret and token are shown only now."""

    async def work(conn: asyncpg.Connection) -> dict[str, str]:
        provider_id = new_id("prv")
        credential = issue_provider_credential()
        async with conn.transaction():
            await conn.execute(queries.CREATE_PROVIDER, provider_id, name)
            await conn.execute(
                queries.CREATE_CREDENTIAL,
                credential.key_id,
                provider_id,
                credential.secret_digest,
                credential.token_digest,
            )
        return {
            "provider_id": provider_id,
            "key_id": credential.key_id,
            "secret": credential.secret,
            "token": credential.token,
        }

    emit(run_db(work), as_json)


@provider_app.command("list")
def provider_list(as_json: JsonFlag = False) -> None:
    """List providers."""

    items = listed(queries.LIST_PROVIDERS)

    def table() -> Table:
        t = Table("provider_id", "name", "disabled", "created_at")
        for item in items:
            t.add_row(
                item["provider_id"],
                item["name"],
                str(item["disabled"]),
                table_time(item["created_at"]),
            )
        return t

    emit({"items": items}, as_json, table)


@provider_app.command("disable")
def provider_disable(provider_id: str, as_json: JsonFlag = False) -> None:
    """Disable a provider: its credentials stop authenticating."""
    set_disabled(queries.SET_PROVIDER_DISABLED, "provider_id", provider_id, True, as_json)


@provider_app.command("enable")
def provider_enable(provider_id: str, as_json: JsonFlag = False) -> None:
    """Enable a disabled provider again: its credentials authenticate again."""
    set_disabled(queries.SET_PROVIDER_DISABLED, "provider_id", provider_id, False, as_json)


# A provider's rate: one request in 1,000 s at the least (Retry-After stays within that), and
# what a double precision and a Postgres integer column hold at the most.
MIN_RATE: Final = 0.001
MAX_RATE: Final = 1e9
MAX_BURST: Final = 2**31 - 1


@provider_app.command("rate")
def provider_rate(
    provider_id: str,
    per_second: Annotated[
        float | None,
        typer.Option(
            "--per-second",
            parser=number_from(MIN_RATE, MAX_RATE),
            help=f"Requests per second sustained ({MIN_RATE:g}-{MAX_RATE:g}).",
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst",
            parser=integer_from(1, MAX_BURST),
            help=f"Requests at once (1-{MAX_BURST}).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a provider's request rate on the provider API; without options, back to the
    service default (RWASYNC_INGEST_RATE_PER_SECOND / _RATE_BURST)."""

    async def work(conn: asyncpg.Connection) -> None:
        updated = await conn.execute(queries.SET_PROVIDER_RATE, provider_id, per_second, burst)
        if updated == "UPDATE 0":
            raise unknown("provider_id", provider_id, "provider")

    run_db(work)
    emit({"provider_id": provider_id, "per_second": per_second, "burst": burst}, as_json)


@reader_app.command("create")
def reader_create(name: NameArgument, as_json: JsonFlag = False) -> None:
    """Create a reader (investor read access); its token is shown only now."""

    async def work(conn: asyncpg.Connection) -> dict[str, str]:
        reader_id, token = new_id("rdr"), issue_reader_token()
        await conn.execute(queries.CREATE_READER, reader_id, name, digest(token))
        return {"reader_id": reader_id, "token": token}

    emit(run_db(work), as_json)


@reader_app.command("list")
def reader_list(as_json: JsonFlag = False) -> None:
    """List readers, oldest first (never their tokens)."""

    items = listed(queries.LIST_READERS)

    def table() -> Table:
        t = Table("reader_id", "name", "created_at", "revoked_at")
        for item in items:
            t.add_row(
                item["reader_id"],
                item["name"],
                table_time(item["created_at"]),
                table_time(item["revoked_at"]),
            )
        return t

    emit({"items": items}, as_json, table)


@reader_app.command("revoke")
def reader_revoke(reader_id: str, as_json: JsonFlag = False) -> None:
    """Revoke a reader's token: it stops authenticating (within the 5 s cache). Revoking it
    again keeps the first instant and says so (`already_revoked`)."""

    async def work(conn: asyncpg.Connection) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(queries.REVOKE_READER, reader_id)
        if row is None:
            raise unknown("reader_id", reader_id, "reader")
        return row

    row = run_db(work)
    emit(
        {
            "reader_id": reader_id,
            "revoked_at": timestamp_text(row["revoked_at"]),
            "already_revoked": row["already_revoked"],
        },
        as_json,
    )
