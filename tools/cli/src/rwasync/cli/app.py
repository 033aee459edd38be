"""`rwasync`: the operator CLI. With `--json`, stdout holds exactly one JSON document; logs and
errors go to stderr. It reads the same settings as the services (environment, then `.env`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
import typer.main
from typer.core import TyperGroup

from rwasync.cli.flags import JsonFlag

if TYPE_CHECKING:  # typer carries its own click
    from typer._click.core import Command, Context

# The command groups, each imported only when it runs (or for `--help`): importing every one
# took half of a command's time, 0.35 of 0.68 s here.
GROUPS: dict[str, tuple[str, str]] = {
    "provider": ("rwasync.cli.tenants", "provider_app"),
    "reader": ("rwasync.cli.tenants", "reader_app"),
    "credential": ("rwasync.cli.credentials", "credential_app"),
    "partner": ("rwasync.cli.credentials", "partner_app"),
    "feed": ("rwasync.cli.feeds", "feed_app"),
    "price": ("rwasync.cli.prices", "price_app"),
    "dlq": ("rwasync.cli.dlq", "dlq_app"),
}


class LazyGroups(TyperGroup):
    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), *GROUPS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in GROUPS:
            return super().get_command(ctx, cmd_name)
        module, attribute = GROUPS[cmd_name]
        group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
        group.name = cmd_name
        return group


app = typer.Typer(
    help="Operate rwasync: migrations, providers, credentials, partners, readers, feeds, prices, "
    "dead letters and the system's status.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    cls=LazyGroups,
)


@app.command()
def migrate(as_json: JsonFlag = False) -> None:
    """Apply database migrations (creates the database if missing; safe to run concurrently)."""
    import asyncio

    import asyncpg

    from rwasync.cli.common import emit, fail, settings
    from rwasync.platform.migrate import migrate as apply_migrations

    try:
        applied = asyncio.run(apply_migrations(settings().database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"database error: {exc}")
    emit({"applied": applied}, as_json)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """One screen: queues, backlog, feed runs, dead letters, error rates and problems.

    Exit 0 once read (problems included); 1 if the database cannot be read."""
    from rich.console import Console

    from rwasync.cli.common import emit, run_db, settings
    from rwasync.cli.status import gather, render

    found = settings()
    management_url = found.rabbitmq_management_url.get_secret_value()
    report = run_db(lambda conn: gather(conn, found.amqp_url, management_url))
    if as_json:
        emit(report, as_json)
    else:
        render(report, Console())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
