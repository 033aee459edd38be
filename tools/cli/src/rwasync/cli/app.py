"""`rwasync`: the operator CLI. With `--json`, stdout holds exactly one JSON document; logs and
errors go to stderr. It reads the same settings as the services (environment, then `.env`)."""

from __future__ import annotations

import asyncio

import asyncpg
import typer
from rich.console import Console

from rwasync.cli.common import JsonFlag, emit, fail, run_db, settings
from rwasync.cli.credentials import credential_app, partner_app
from rwasync.cli.dlq import dlq_app
from rwasync.cli.feeds import feed_app
from rwasync.cli.prices import price_app
from rwasync.cli.status import gather, render
from rwasync.cli.tenants import provider_app, reader_app
from rwasync.platform.migrate import migrate as apply_migrations

app = typer.Typer(
    help="Operate rwasync: migrations, providers, credentials, partners, readers, feeds, prices, "
    "dead letters and the system's status.",
    no_args_is_help=True,
)
app.add_typer(provider_app, name="provider")
app.add_typer(reader_app, name="reader")
app.add_typer(credential_app, name="credential")
app.add_typer(partner_app, name="partner")
app.add_typer(feed_app, name="feed")
app.add_typer(price_app, name="price")
app.add_typer(dlq_app, name="dlq")


@app.command()
def migrate(as_json: JsonFlag = False) -> None:
    """Apply database migrations (creates the database if missing; safe to run concurrently)."""
    try:
        applied = asyncio.run(apply_migrations(settings().database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"database error: {exc}")
    emit({"applied": applied}, as_json)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """One screen: queues, backlog, feed runs, dead letters, error rates and problems.

    Exit 0 once read (problems included); 1 if the database cannot be read."""
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
