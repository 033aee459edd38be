"""What every command shares: settings, one database connection per command, output (one JSON
document on stdout with `--json`, tables for people), errors on stderr with an exit code."""

from __future__ import annotations

import asyncio
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Annotated, Any, Final, NoReturn, TypeVar

import asyncpg
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rwasync.cli import queries
from rwasync.platform.db import connect
from rwasync.platform.logging import configure_logging
from rwasync.platform.settings import CommonSettings, load_settings
from rwasync.schema.feeds import FeedSettingInvalid
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.feeds import FeedIdTaken, FeedNotFound, RunNotDecidable, RunNotFound

T = TypeVar("T")

# soft_wrap: an error is one line whatever the width (80 columns when stderr is not a terminal).
stderr = Console(stderr=True, soft_wrap=True)

# Exit codes: 1 for an error; `feed trigger --wait` and `feed approve` also use these two.
EXIT_ERROR: Final = 1
EXIT_HELD: Final = 3
EXIT_FAILED: Final = 4


class Refused(Exception):
    """A command's input names something that does not exist or cannot be done (exit 1)."""


def settings() -> CommonSettings:
    """The settings every command reads first: a bad one ends it with exit status 2 and a line
    naming it (as a service does), before the command does anything."""
    found = load_settings(CommonSettings)
    configure_logging("cli", found.log_level, "console")
    return found


def run_db(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on one database connection; errors become a message on stderr and exit 1."""
    database_url = settings().database_url

    async def go() -> T:
        conn = await connect(database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except FeedSettingInvalid as exc:
        fail_invalid(exc)
    except Refused as exc:
        fail(str(exc))
    except FeedNotFound as exc:
        fail(str(unknown("feed_id", exc.feed_id, "feed")))
    except RunNotFound as exc:
        fail(str(unknown("run_id", exc.run_id, "run")))
    except (RunNotDecidable, FeedIdTaken) as exc:
        # The feed API's 409 says the same (`rwasync.store.feeds`): one text for both.
        fail(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"database error: {exc}")


def listed(query: str, *args: Any) -> list[dict[str, Any]]:
    """The rows a listing statement returns, as items for `emit`: each timestamp rendered as the
    APIs render it (`table_time` cuts it to the second for a table), `None` left `None`."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [
            {k: timestamp_text(v) if isinstance(v, datetime) else v for k, v in row.items()}
            for row in await conn.fetch(query, *args)
        ]

    return run_db(work)


# The most of an id an error line echoes.
SHOWN_ID: Final = 200


def unknown(field: str, value: str, what: str) -> Refused:
    """The one refusal of an id that names nothing, whichever command was given it:
    `provider_id 'prv_x': unknown provider` (exit 1). `field` is the id's name in the commands'
    JSON (`feed_id`, `key_id`…), `what` the thing it should have named."""
    shown = value if len(value) <= SHOWN_ID else value[:SHOWN_ID] + "…"  # (a 100,000-char id)
    return Refused(f"{field} {shown!r}: unknown {what}")


async def require_provider(conn: asyncpg.Connection, provider_id: str | None) -> None:
    """Refuse a provider id naming no provider (None: none given, nothing to check); for a
    `--provider` filter, a typo must not read as an empty list."""
    if provider_id is not None and not await conn.fetchval(queries.PROVIDER_EXISTS, provider_id):
        raise unknown("provider_id", provider_id, "provider")


# --- the values of arguments and options -----------------------------------------------------
# Parsers (typer's `parser=`) that refuse a value before the command does anything: a usage
# error, exit 2, `Invalid value for '--limit': …` naming the option, as for an unknown option.

# A name (of a provider, reader, partner) as tables and logs show it: one line, and short enough
# to read there.
MAX_NAME: Final = 300


def checked_name(text: str) -> str:
    """A name without its surrounding blanks; none left, over MAX_NAME characters, or holding a
    control character or line break (a name is shown in one table cell, one log line) is a
    usage error."""
    name = text.strip()
    if not name:
        raise typer.BadParameter("must not be empty or blank")
    if len(name) > MAX_NAME:
        raise typer.BadParameter(f"must be at most {MAX_NAME} characters (got {len(name)})")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise typer.BadParameter(f"must not hold a control character or line break ({bad!r})")
    # A direction override reorders the rest of its table row in the operator's terminal, a
    # zero-width space hides in a name (security trial); the joiners scripts spell with stay.
    bad = next((c for c in name if unicodedata.category(c) == "Cf" and c not in _JOINERS), None)
    if bad is not None:
        raise typer.BadParameter(
            f"must not hold an invisible formatting character such as a direction mark ({bad!r})"
        )
    return name


_JOINERS: Final = frozenset({"\u200c", "\u200d"})  # zero-width non-joiner and joiner


NameArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME",
        parser=checked_name,
        help=f"1-{MAX_NAME} characters, no control characters (blanks around it are dropped).",
    ),
]


def integer_from(low: int, high: int) -> Callable[[str | int], int]:
    """A parser of an integer from `low` to `high` (a page size, a burst…)."""

    def parse(text: str | int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise typer.BadParameter(f"must be an integer from {low} to {high} (got {value})")
        return value

    return parse


def number_from(low: float, high: float, unit: str = "") -> Callable[[str | float], float]:
    """A parser of a number from `low` to `high` (a rate, seconds to wait…). `nan` and `inf`
    parse as floats: NaN is out of every range (it fails every comparison; a check written as
    `value < low` would let it wait for ever), and so is an infinity."""
    bounds = f"from {low:g} to {high:g}{unit}"

    def parse(text: str | float) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number {bounds}") from None
        if not low <= value <= high:
            raise typer.BadParameter(f"must be a number {bounds} (got {text})")
        return value

    return parse


# Seconds to wait for a feed run (`--timeout`): it is read four times a second, and a week is
# longer than any run takes.
MAX_WAIT: Final = 7 * 86400
DEFAULT_WAIT: Final = 900
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        parser=number_from(1, MAX_WAIT, " seconds"),
        help=f"Seconds to wait for the run (1-{MAX_WAIT}; default {DEFAULT_WAIT}).",
    ),
]


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    stderr.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def fail_invalid(exc: FeedSettingInvalid, options: Mapping[str, str] | None = None) -> NoReturn:
    """Every problem of the settings, one `error: /pointer: message` line each (with the
    command's option for that pointer, from `options`, when it has one), then exit 1."""
    for error in exc.errors:
        line = f"{error.pointer or '/'}: {error.message}"
        option = (options or {}).get(error.pointer)
        if option is not None and option.split()[0] not in error.message:
            line += f" ({option})"
        stderr.print(f"[red]error:[/red] {escape(line)}")
    raise typer.Exit(EXIT_ERROR)


def _json_default(value: Any) -> str:
    # Every timestamp a command prints reads like the APIs' (UTC, microseconds, `Z`), whether the
    # command rendered it or left a database row's datetime for the serialiser.
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def ids_whole(table: Table) -> Table:
    """`table` with its id columns (`run_id`, `key_id`, `provider_ids`…) never cut short or
    wrapped, so an id can be copied into the next command: a narrow screen or a pipe (80 columns)
    narrows the others. A cell of several lines (an id above what it names, or one id a line) is
    as wide as its longest line."""
    for column in table.columns:
        if str(column.header).endswith(("_id", "_ids")):
            column.no_wrap = True
            column.min_width = max(
                (len(line) for cell in column.cells for line in str(cell).splitlines()),
                default=column.min_width or 0,
            )
    return table


def table_time(text: str | None) -> str:
    """A timestamp as a table shows it, to the second ("2026-11-30 17:00:01"): the JSON keeps
    the full one (microseconds, `Z`)."""
    return text[:19].replace("T", " ") if text else ""


def json_text(document: Any) -> str:
    return orjson.dumps(
        document, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
    ).decode()


def set_disabled(statement: str, field: str, owner_id: str, disabled: bool, as_json: bool) -> None:
    """`provider disable|enable`, `partner disable|enable`: `statement` sets the flag of the row
    `owner_id` names (`field`: `provider_id`, `partner_id`), an error when none."""

    async def work(conn: asyncpg.Connection) -> None:
        if await conn.execute(statement, owner_id, disabled) == "UPDATE 0":
            raise unknown(field, owner_id, field.removesuffix("_id"))

    run_db(work)
    emit({field: owner_id, "disabled": disabled}, as_json)


def emit(document: Any, as_json: bool, table: Callable[[], Table] | None = None) -> None:
    """`--json`: exactly one JSON document on stdout; otherwise a table or pretty JSON."""
    if as_json:
        sys.stdout.write(json_text(document) + "\n")
    elif table is not None:
        Console().print(ids_whole(table()))
    else:
        Console().print_json(json_text(document))
