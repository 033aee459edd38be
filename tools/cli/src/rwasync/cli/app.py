"""`rwasync`: the operator CLI. With `--json`, stdout holds exactly one JSON document; logs and
errors go to stderr. It reads the same environment as the services (RWASYNC_DATABASE_URL, ...)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import orjson
import typer
from rich.console import Console
from rich.table import Table

from rwasync.platform import feeds
from rwasync.platform.credentials import (
    digest,
    issue_provider_credential,
    issue_reader_token,
    new_id,
)
from rwasync.platform.logging import configure_logging
from rwasync.platform.migrate import migrate as apply_migrations
from rwasync.platform.netguard import AddressPolicy
from rwasync.platform.settings import CommonSettings

app = typer.Typer(
    help="Operate rwasync: migrations, providers, readers and feeds.", no_args_is_help=True
)
provider_app = typer.Typer(help="Providers (tenants) and their credentials.", no_args_is_help=True)
reader_app = typer.Typer(help="Readers: investor-side read access.", no_args_is_help=True)
feed_app = typer.Typer(help="Feed sources and their runs.", no_args_is_help=True)
app.add_typer(provider_app, name="provider")
app.add_typer(reader_app, name="reader")
app.add_typer(feed_app, name="feed")

stderr = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
T = TypeVar("T")

# `feed trigger --wait` exit codes (API.md, "Feeds").
EXIT_HELD = 3
EXIT_FAILED = 4


def _settings() -> CommonSettings:
    return CommonSettings()


def _run(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    settings = _settings()
    configure_logging("cli", settings.log_level, "console")

    async def go() -> T:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except (feeds.FeedRequestInvalid, feeds.RunNotDecidable) as exc:
        _fail(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(f"database error: {exc}")


def _fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _emit(document: Any, as_json: bool, table: Callable[[], Table] | None = None) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    elif table is not None:
        Console().print(table())
    else:
        Console().print_json(orjson.dumps(document).decode())


@app.command()
def migrate(as_json: JsonFlag = False) -> None:
    """Apply database migrations (creates the database if missing; safe to run concurrently)."""
    settings = _settings()
    configure_logging("cli", settings.log_level, "console")
    try:
        applied = asyncio.run(apply_migrations(settings.database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(f"database error: {exc}")
    _emit({"applied": applied}, as_json)


@provider_app.command("create")
def provider_create(name: str, as_json: JsonFlag = False) -> None:
    """Create a provider with one credential; its secret and token are shown only now."""
    if not name.strip() or len(name) > 300:
        _fail("NAME must be 1-300 characters")

    async def work(conn: asyncpg.Connection) -> dict[str, str]:
        provider_id = new_id("prv")
        credential = issue_provider_credential()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO providers (provider_id, name) VALUES ($1, $2)", provider_id, name
            )
            await conn.execute(
                """INSERT INTO provider_credentials
                       (key_id, provider_id, secret_digest, token_digest)
                   VALUES ($1, $2, $3, $4)""",
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

    _emit(_run(work), as_json)


@provider_app.command("list")
def provider_list(as_json: JsonFlag = False) -> None:
    """List providers."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT provider_id, name, disabled, created_at FROM providers ORDER BY created_at"
        )
        return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]

    items = _run(work)

    def table() -> Table:
        t = Table("provider_id", "name", "disabled", "created_at")
        for item in items:
            t.add_row(item["provider_id"], item["name"], str(item["disabled"]), item["created_at"])
        return t

    _emit({"items": items}, as_json, table)


@provider_app.command("disable")
def provider_disable(provider_id: str, as_json: JsonFlag = False) -> None:
    """Disable a provider: its credentials stop authenticating."""

    async def work(conn: asyncpg.Connection) -> str:
        return str(
            await conn.execute(
                "UPDATE providers SET disabled = true WHERE provider_id = $1", provider_id
            )
        )

    if _run(work) == "UPDATE 0":
        _fail(f"unknown provider {provider_id!r}")
    _emit({"provider_id": provider_id, "disabled": True}, as_json)


@reader_app.command("create")
def reader_create(name: str, as_json: JsonFlag = False) -> None:
    """Create a reader (investor read access); its token is shown only now."""

    async def work(conn: asyncpg.Connection) -> dict[str, str]:
        reader_id, token = new_id("rdr"), issue_reader_token()
        await conn.execute(
            "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, $2, $3)",
            reader_id,
            name,
            digest(token),
        )
        return {"reader_id": reader_id, "token": token}

    _emit(_run(work), as_json)


@feed_app.command("add")
def feed_add(
    provider_id: str,
    url: str,
    fmt: Annotated[str, typer.Option("--format", help="Feed format.")] = "json",
    every: Annotated[
        str | None,
        typer.Option("--every", help="Schedule interval, e.g. 15m, 24h (default: manual only)."),
    ] = None,
    threshold_percent: Annotated[
        float,
        typer.Option(
            "--deletion-threshold-percent", help="Hold runs deleting more than this share."
        ),
    ] = 20.0,
    threshold_min: Annotated[
        int, typer.Option("--deletion-threshold-min", help="...and more than this many assets.")
    ] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Add a feed source for a provider."""
    policy = AddressPolicy.from_setting(_settings().feed_allowed_networks)
    try:
        interval = feeds.parse_interval(every) if every else None
    except feeds.FeedRequestInvalid as exc:
        _fail(str(exc))

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return await feeds.add_feed(
            conn,
            provider_id=provider_id,
            url=url,
            fmt=fmt,
            interval_seconds=interval,
            policy=policy,
            deletion_threshold_percent=threshold_percent,
            deletion_threshold_min_count=threshold_min,
        )

    _emit(_run(work), as_json)


@feed_app.command("list")
def feed_list(
    provider_id: Annotated[str | None, typer.Option("--provider")] = None, as_json: JsonFlag = False
) -> None:
    """List feed sources."""
    items = _run(lambda conn: feeds.list_feeds(conn, provider_id))
    _emit({"items": items}, as_json)


def _wait_for_run(run_id: str, timeout: float) -> dict[str, Any]:
    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = await feeds.get_run(conn, run_id)
            assert run is not None
            if run["status"] in feeds.FINISHED_STATUSES and not (
                run["status"] == "held" and await _approval_pending(conn, run_id)
            ):
                return run
            if time.monotonic() > deadline:
                _fail(f"run {run_id} still {run['status']} after {timeout:.0f} s", EXIT_FAILED)
            await asyncio.sleep(0.25)

    return _run(work)


async def _approval_pending(conn: asyncpg.Connection, run_id: str) -> bool:
    return bool(
        await conn.fetchval("SELECT decision IS NOT NULL FROM feed_runs WHERE run_id = $1", run_id)
    )


def _exit_for(run: dict[str, Any]) -> None:
    if run["status"] == "held":
        raise typer.Exit(EXIT_HELD)
    if run["status"] in ("failed", "rejected"):
        raise typer.Exit(EXIT_FAILED)


@feed_app.command("trigger")
def feed_trigger(
    feed_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print it.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Run a feed now (it starts within 5 s). Exit 0 ok/not_modified, 3 held, 4 failed/rejected."""
    run_id = _run(lambda conn: feeds.request_run(conn, feed_id))
    if not wait:
        _emit({"run_id": run_id}, as_json)
        return
    run = _wait_for_run(run_id, timeout)
    _emit(run, as_json)
    _exit_for(run)


@feed_app.command("runs")
def feed_runs(
    feed_id: str,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """A feed's runs, newest first."""
    items = _run(lambda conn: feeds.list_runs(conn, feed_id, limit))

    def table() -> Table:
        t = Table("run_id", "status", "started_at", "finished_at", "counts", "reason")
        for r in items:
            t.add_row(
                r["run_id"],
                r["status"],
                r["started_at"] or "",
                r["finished_at"] or "",
                " ".join(f"{k}={v}" for k, v in r["counts"].items()),
                r.get("reason") or "",
            )
        return t

    _emit({"items": items, "next_cursor": None}, as_json, table)


@feed_app.command("approve")
def feed_approve(
    run_id: str,
    timeout: Annotated[float, typer.Option("--timeout")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Apply a feed's latest held run now, under the version guards; prints the finished run."""
    _run(lambda conn: feeds.decide_run(conn, run_id, "approve"))
    run = _wait_for_run(run_id, timeout)
    _emit(run, as_json)
    _exit_for(run)


@feed_app.command("reject")
def feed_reject(run_id: str, as_json: JsonFlag = False) -> None:
    """Reject a feed's latest held run: nothing of it is applied."""
    _run(lambda conn: feeds.decide_run(conn, run_id, "reject"))
    run = _run(lambda conn: feeds.get_run(conn, run_id))
    _emit(run, as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
